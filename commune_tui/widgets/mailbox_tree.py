"""The sidebar: domains with their inboxes, thread counts and a marker for new mail; then the Outbox
with what waits in it."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..display import line
from ..messages import InboxSelected, OutboxSelected
from ..models import Domain, Inbox

OUTBOX_TABS = (("approvals", "Awaiting approval"), ("scheduled", "Scheduled"), ("drafts", "Drafts"))


class OutboxFolder:
    """The data of the tree's Outbox entry and of its tabs below it."""

    def __init__(self, tab: str = "approvals") -> None:
        self.id = f"outbox-{tab}"
        self.tab = tab


class MailboxTree(Tree[Inbox | Domain | OutboxFolder]):
    """Domains → inboxes, then Outbox; selecting an inbox posts `InboxSelected`, the Outbox
    `OutboxSelected`."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="tree.down"),
        Binding("k", "cursor_up", "Up", show=False, id="tree.up"),
        Binding("g", "scroll_home", "Top", show=False, id="tree.top"),
        Binding("G", "scroll_end", "Bottom", show=False, id="tree.bottom"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__("Mailboxes", **kwargs)  # type: ignore[arg-type]
        self.show_root = False
        self.guide_depth = 2
        self.inbox_nodes: dict[str, TreeNode[Inbox | Domain]] = {}
        self.counts: dict[str, str] = {}
        self.new_mail: set[str] = set()
        self.outbox_node: TreeNode[Inbox | Domain | OutboxFolder] | None = None
        self.outbox_counts: dict[str, int] = {}

    def set_mailboxes(self, domains: list[Domain], inboxes: list[Inbox]) -> None:
        """Rebuild the tree (only when the set of mailboxes changed, so the cursor stays put)."""
        wanted = [(d.id, [i.id for i in inboxes if i.domain_id == d.id]) for d in domains]
        current = [(node.data.id, [c.data.id for c in node.children if c.data])
                   for node in self.root.children if isinstance(node.data, Domain)]
        if wanted == current and self.outbox_node is not None:
            return
        selected = self.cursor_node.data.id if self.cursor_node and self.cursor_node.data else None
        self.clear()
        self.inbox_nodes.clear()
        for domain in domains:
            marker = "" if domain.status in (None, "verified") else f"  ({domain.status})"
            domain_node = self.root.add(line(domain.name + marker, style="bold"), data=domain, expand=True)
            for inbox in inboxes:
                if inbox.domain_id == domain.id:
                    node = domain_node.add_leaf(self._label(inbox), data=inbox)
                    self.inbox_nodes[inbox.id] = node
        self.outbox_node = self.root.add(line("Outbox", style="bold"), data=OutboxFolder(), expand=True)
        for tab, _ in OUTBOX_TABS:
            self.outbox_node.add_leaf(self._outbox_label(tab), data=OutboxFolder(tab))
        if selected in self.inbox_nodes:
            self.move_cursor(self.inbox_nodes[selected], animate=False)

    def _label(self, inbox: Inbox) -> Text:
        label = line(inbox.local_part or inbox.address)
        count = self.counts.get(inbox.id)
        if count:
            label.append(f" {count}", style="dim")
        if inbox.id in self.new_mail:
            label.append(" ●", style="bold")
        return label

    def _outbox_label(self, tab: str) -> Text:
        label = line(dict(OUTBOX_TABS)[tab])
        count = self.outbox_counts.get(tab)
        if count:
            label.append(f" {count}", style="bold" if tab == "approvals" else "dim")
        return label

    def set_outbox(self, counts: dict[str, int]) -> None:
        """Show how many messages wait in each of the outbox's tabs."""
        self.outbox_counts = counts
        if self.outbox_node is not None:
            for child in self.outbox_node.children:
                if isinstance(child.data, OutboxFolder):
                    child.set_label(self._outbox_label(child.data.tab))

    def update_inbox(self, inbox_id: str, count: str | None = None, new: bool | None = None) -> None:
        """Change an inbox's count or new-mail marker in place."""
        if count is not None:
            self.counts[inbox_id] = count
        if new is True:
            self.new_mail.add(inbox_id)
        elif new is False:
            self.new_mail.discard(inbox_id)
        node = self.inbox_nodes.get(inbox_id)
        if node is not None and isinstance(node.data, Inbox):
            node.set_label(self._label(node.data))

    def select_inbox(self, inbox_id: str) -> None:
        node = self.inbox_nodes.get(inbox_id)
        if node is not None:
            self.move_cursor(node, animate=False)
            self.post_message(InboxSelected(node.data))  # type: ignore[arg-type]

    def on_tree_node_selected(self, event: Tree.NodeSelected[Inbox | Domain]) -> None:
        event.stop()
        if isinstance(event.node.data, Inbox):
            self.post_message(InboxSelected(event.node.data))
        elif isinstance(event.node.data, OutboxFolder):
            self.post_message(OutboxSelected(event.node.data.tab))
