"""The sidebar: domains → inboxes with the server's unread/total counts → views Inbox, Flagged, Sent,
Archive and Trash; then the Outbox with what waits in it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..display import line
from ..messages import InboxSelected, OutboxSelected
from ..models import Domain, Inbox
from ..views import INBOX, VIEWS, MailView, inbox_count

OUTBOX_TABS = (("approvals", "Awaiting approval"), ("scheduled", "Scheduled"), ("drafts", "Drafts"))


@dataclass(frozen=True)
class ViewNode:
    """A tree node that opens one view of one inbox."""

    inbox: Inbox
    view: MailView


class OutboxFolder:
    """The data of the tree's Outbox entry and of its tabs below it."""

    def __init__(self, tab: str = "approvals") -> None:
        self.id = f"outbox-{tab}"
        self.tab = tab


NodeData = Inbox | Domain | ViewNode | OutboxFolder


class MailboxTree(Tree[NodeData]):
    """Domains → inboxes → views, then Outbox; selecting an inbox or a view posts `InboxSelected`,
    the Outbox `OutboxSelected`."""

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
        self.auto_expand = False
        self.inbox_nodes: dict[str, TreeNode[NodeData]] = {}
        self.view_nodes: dict[tuple[str, str], TreeNode[NodeData]] = {}
        self.inboxes: dict[str, Inbox] = {}
        self.counts: dict[str, str] = {}
        """Inbox id → the count shown beside it (`3/12`: unread of all threads)."""
        self.new_mail: set[str] = set()
        self.outbox_node: TreeNode[NodeData] | None = None
        self.outbox_counts: dict[str, int] = {}

    def set_mailboxes(self, domains: list[Domain], inboxes: list[Inbox]) -> None:
        """Show these inboxes and their counts; the tree is rebuilt only when the set of mailboxes
        changed, so the cursor stays put."""
        for inbox in inboxes:
            self.inboxes[inbox.id] = inbox
            self.counts[inbox.id] = inbox_count(inbox.counts)
        wanted = [(d.id, [i.id for i in inboxes if i.domain_id == d.id]) for d in domains]
        current = [(node.data.id, [c.data.id for c in node.children if isinstance(c.data, Inbox)])
                   for node in self.root.children if isinstance(node.data, Domain)]
        if wanted == current and self.outbox_node is not None:
            for inbox in inboxes:
                self._relabel(inbox.id)
            return
        selected = self.cursor_node.data if self.cursor_node else None
        expanded = {key for key, node in self.inbox_nodes.items() if node.is_expanded}
        self.clear()
        self.inbox_nodes.clear()
        self.view_nodes.clear()
        for domain in domains:
            marker = "" if domain.status in (None, "verified") else f"  ({domain.status})"
            domain_node = self.root.add(line(domain.name + marker, style="bold"), data=domain, expand=True)
            for inbox in inboxes:
                if inbox.domain_id == domain.id:
                    node = domain_node.add(self._label(inbox), data=inbox, expand=inbox.id in expanded)
                    self.inbox_nodes[inbox.id] = node
                    for view in VIEWS:
                        self.view_nodes[inbox.id, view.key] = node.add_leaf(
                            self._view_label(inbox, view), data=ViewNode(inbox, view))
        self.outbox_node = self.root.add(line("Outbox", style="bold"), data=OutboxFolder(), expand=True)
        for tab, _ in OUTBOX_TABS:
            self.outbox_node.add_leaf(self._outbox_label(tab), data=OutboxFolder(tab))
        self._restore_cursor(selected)

    def _restore_cursor(self, selected: NodeData | None) -> None:
        if isinstance(selected, ViewNode):
            node = self.view_nodes.get((selected.inbox.id, selected.view.key))
        elif isinstance(selected, Inbox):
            node = self.inbox_nodes.get(selected.id)
        else:
            node = None
        if node is not None:
            self.move_cursor(node, animate=False)

    def _label(self, inbox: Inbox) -> Text:
        label = line(inbox.local_part or inbox.address)
        count = self.counts.get(inbox.id)
        if count:
            label.append(f" {count}", style="dim")
        if inbox.id in self.new_mail:
            label.append(" ●", style="bold")
        return label

    def _view_label(self, inbox: Inbox, view: MailView) -> Text:
        label = line(view.title)
        count = view.count(inbox.counts)
        if count:
            label.append(f" {count}", style="dim")
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

    def _relabel(self, inbox_id: str) -> None:
        node, inbox = self.inbox_nodes.get(inbox_id), self.inboxes.get(inbox_id)
        if node is None or inbox is None:
            return
        node.set_label(self._label(inbox))
        for view in VIEWS:
            view_node = self.view_nodes.get((inbox_id, view.key))
            if view_node is not None:
                view_node.set_label(self._view_label(inbox, view))

    def update_counts(self, inboxes: list[Inbox]) -> None:
        """New server counts for these inboxes."""
        for inbox in inboxes:
            self.inboxes[inbox.id] = inbox
            self.counts[inbox.id] = inbox_count(inbox.counts)
            self._relabel(inbox.id)

    def update_inbox(self, inbox_id: str, new: bool | None = None) -> None:
        """Set or clear an inbox's new-mail marker."""
        if new is True:
            self.new_mail.add(inbox_id)
        elif new is False:
            self.new_mail.discard(inbox_id)
        self._relabel(inbox_id)

    def select_inbox(self, inbox_id: str, view: MailView = INBOX) -> None:
        """Open a view of an inbox as if chosen in the tree (its node unfolds to show the views)."""
        node = self.inbox_nodes.get(inbox_id)
        if node is None:
            return
        node.expand()
        target = node if view is INBOX else self.view_nodes.get((inbox_id, view.key), node)
        self.move_cursor(target, animate=False)
        self.post_message(InboxSelected(self.inboxes[inbox_id], view))

    def on_tree_node_selected(self, event: Tree.NodeSelected[NodeData]) -> None:
        event.stop()
        data = event.node.data
        if isinstance(data, Inbox):
            event.node.expand()
            self.post_message(InboxSelected(data, INBOX))
        elif isinstance(data, ViewNode):
            self.post_message(InboxSelected(self.inboxes.get(data.inbox.id, data.inbox), data.view))
        elif isinstance(data, OutboxFolder):
            self.post_message(OutboxSelected(data.tab))
