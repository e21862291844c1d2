"""The main screen: mailboxes | threads | reader, kept current by live updates."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header

from ..client import ApiError
from ..display import line
from ..messages import InboxSelected, NewMail, OutboxSelected, ThreadSelected
from ..models import Domain, Draft, Inbox, Message, Page, ThreadSummary
from ..widgets.mailbox_tree import MailboxTree
from ..widgets.reader import Reader
from ..widgets.spinner import spinner_if_slow
from ..widgets.thread_list import ThreadList, is_unread
from .thread_actions import ThreadActions

if TYPE_CHECKING:
    from ..app import CommuneApp

LIVE_PAGE = 20


class MailScreen(ThreadActions):
    """Browse and read: the screen the client opens on."""

    app: CommuneApp

    BINDINGS = [
        Binding("c", "compose", "Compose", id="mail.compose", tooltip="Write a new message"),
        Binding("slash", "search", "Search", id="mail.search", key_display="/"),
        Binding("ctrl+d", "domains", "Domains", show=False, id="mail.domains"),
        # Off the footer (it must fit 80 columns); `?` lists it and the tree's Outbox entry shows counts.
        Binding("O", "outbox", "Outbox", show=False, id="mail.outbox",
                tooltip="Held, scheduled and draft messages of this inbox"),
        Binding("q", "back(True)", "Back", id="mail.quit", tooltip="Reader → list; on the list: quit"),
        Binding("escape", "back(False)", "Back", show=False, id="mail.back"),
        Binding("m", "toggle_mailboxes", "Mailboxes", show=False, id="mail.toggle_mailboxes"),
        Binding("question_mark", "help", "Keys", id="mail.help", key_display="?"),
    ]
    NARROW = 100
    """At this width and less the mailbox tree hides until `m` shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox: Inbox | None = None
        self.domains: list[Domain] = []
        self.watermarks: dict[str, str] = {}
        self.known_threads: dict[str, set[str]] = {}
        self.more_threads: dict[str, bool] = {}
        self.unread: dict[str, set[str]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="panes"):
            yield MailboxTree(id="mailboxes", classes="pane")
            with Vertical(id="right"):
                threads = ThreadList(self.app.settings.clock, self.app.read_state,
                                     self.app.settings.page_size, id="threads", classes="pane")
                threads.zone, threads.names = self.app.settings.timezone, self.app.names
                yield threads
                yield Reader(id="reader", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#mailboxes").border_title = "Mailboxes"
        self.query_one("#threads").border_title = "Threads"
        self.query_one("#reader").border_title = "Message"
        self.load_mailboxes()

    def on_resize(self) -> None:
        narrow = self.size.width <= self.NARROW
        self.set_class(narrow, "narrow")
        footer = self.query_one(Footer)
        footer.compact, footer.show_command_palette = narrow, not narrow

    @property
    def tree(self) -> MailboxTree:
        return self.query_one(MailboxTree)

    @property
    def thread_list(self) -> ThreadList:
        return self.query_one(ThreadList)

    @work(group="mailboxes", exclusive=True)
    async def load_mailboxes(self) -> None:
        """Domains and inboxes into the tree, with thread counts, then open the first inbox."""
        client = self.app.client
        try:
            self.domains, inboxes = await asyncio.gather(client.list_domains(), client.list_inboxes())
        except ApiError as exc:
            self.app.show_problem(exc)
            return
        self.app.inboxes = inboxes
        pages = await asyncio.gather(*(client.list_threads(inbox_id=i.id, limit=LIVE_PAGE) for i in inboxes),
                                     return_exceptions=True)
        for inbox, page in zip(inboxes, pages):
            if isinstance(page, Page):
                self._remember(inbox.id, page)
                self.tree.counts[inbox.id] = self.count_label(inbox.id)
        self.tree.set_mailboxes(self.domains, inboxes)
        if inboxes and self.inbox is None:
            preferred = next((i for i in inboxes if i.local_part == "me"), inboxes[0])
            self.tree.select_inbox(preferred.id)
        self.thread_list.focus()
        self.load_outbox_counts()

    @work(group="outbox-counts", exclusive=True)
    async def load_outbox_counts(self) -> None:
        """What waits in every inbox's outbox, beside the tree's Outbox entry."""
        try:
            counts = await self.app.client.outbox_counts()
        except ApiError:
            return  # a server without an outbox: the entry stays bare
        self.tree.set_outbox({"approvals": counts.pending_approval, "scheduled": counts.scheduled,
                              "drafts": counts.drafts})

    def count_label(self, inbox_id: str) -> str:
        """`12` threads, `50+` when there are more than the first page, and how many are unread."""
        known = len(self.known_threads.get(inbox_id, ()))
        label = f"{known}+" if self.more_threads.get(inbox_id) else str(known)
        unread = len(self.unread.get(inbox_id, ()))
        return f"{label} ({unread} new)" if unread else label

    def _remember(self, inbox_id: str, page: Page) -> None:
        self.known_threads[inbox_id] = {t.thread_id for t in page.data}
        self.unread[inbox_id] = {t.thread_id for t in page.data if is_unread(t, self.app.read_state)}
        self.more_threads[inbox_id] = page.has_more
        newest = max((t.last_message_at for t in page.data), default="")
        self.watermarks[inbox_id] = max(self.watermarks.get(inbox_id, ""), newest)

    @on(InboxSelected)
    def open_inbox(self, event: InboxSelected) -> None:
        """Show the chosen inbox's threads and clear its new-mail marker."""
        self.inbox = event.inbox
        self.sub_title = event.inbox.address
        self.tree.update_inbox(event.inbox.id, new=False)
        self._load_inbox(event.inbox)

    @work(group="inbox", exclusive=True)
    async def _load_inbox(self, inbox: Inbox) -> None:
        thread_list = self.thread_list

        async def loader(cursor: str | None) -> Page:
            return await self.app.client.list_threads(inbox_id=inbox.id, cursor=cursor,
                                                      limit=self.app.settings.page_size)

        try:
            with spinner_if_slow(thread_list):
                page = await loader(None)
        except ApiError as exc:
            self.notify(f"Could not load {inbox.address}: {exc.message}", severity="error", markup=False)
            return
        thread_list.border_title = line(f"Threads · {inbox.address}")
        thread_list.show(loader, page)

    @on(ThreadSelected)
    def open_thread(self, event: ThreadSelected) -> None:
        """Open the chosen thread in the reader."""
        self._show_thread(event.thread)

    @work(group="reader", exclusive=True)
    async def _show_thread(self, thread: ThreadSummary, focus: bool = True) -> None:
        messages = await self.show_in_reader(thread, focus)
        if messages is None:
            return
        reader = self.active_reader()
        reader.border_title = line(f"Message · {len(messages)} in thread")
        self.thread_list.mark_read(thread.thread_id)
        inbox_id = thread.inbox_id or ""
        if thread.thread_id in self.unread.get(inbox_id, set()):
            self.unread[inbox_id].discard(thread.thread_id)
            self.tree.update_inbox(inbox_id, count=self.count_label(inbox_id))

    async def thread_for_action(self) -> tuple[ThreadSummary, list[Message]] | None:
        """From the thread list, act on the highlighted thread even when it is not open yet."""
        reader = self.query_one(Reader)
        highlighted = self.thread_list.current_thread
        if self.focused is self.thread_list and highlighted is not None:
            if reader.thread is None or reader.thread.thread_id != highlighted.thread_id:
                return await self.with_messages(highlighted)
        return await super().thread_for_action()

    @on(NewMail)
    def on_new_mail(self, event: NewMail) -> None:
        self.refresh_mail()

    @work(group="refresh", exclusive=True)
    async def refresh_mail(self) -> None:
        """Pick up threads that changed since we last looked, without moving the cursor."""
        client = self.app.client
        try:
            inboxes = await client.list_inboxes()
            if {i.id for i in inboxes} != {i.id for i in self.app.inboxes}:
                self.app.inboxes = inboxes
                self.domains = await client.list_domains()
                self.tree.set_mailboxes(self.domains, inboxes)
            domain_ids = list(dict.fromkeys(i.domain_id for i in inboxes if i.domain_id))
            pages = await asyncio.gather(*(client.list_threads(domain_id=d, limit=LIVE_PAGE)
                                           for d in domain_ids))
        except ApiError:
            return  # the next event or poll tries again
        changed = [t for page in pages for t in page.data
                   if t.inbox_id and t.last_message_at > self.watermarks.get(t.inbox_id, "")]
        for thread in sorted(changed, key=lambda t: t.last_message_at):
            self._absorb(thread)

    def _absorb(self, thread: ThreadSummary) -> None:
        inbox_id = thread.inbox_id or ""
        self.watermarks[inbox_id] = max(self.watermarks.get(inbox_id, ""), thread.last_message_at)
        inbound = thread.last_direction != "outbound"
        self.known_threads.setdefault(inbox_id, set()).add(thread.thread_id)
        if inbound:
            self.unread.setdefault(inbox_id, set()).add(thread.thread_id)
        self.tree.update_inbox(inbox_id, count=self.count_label(inbox_id))
        if self.inbox is not None and inbox_id == self.inbox.id:
            self.thread_list.upsert([thread], mark_fresh=inbound)
            reader = self.query_one(Reader)
            if reader.thread is not None and reader.thread.thread_id == thread.thread_id:
                self._show_thread(thread, focus=False)  # the open thread grew: show the new message
        elif inbound:
            self.tree.update_inbox(inbox_id, new=True)
        if inbound:
            self.notify(thread.subject or "(no subject)", title=f"New mail from {thread.last_sender}",
                        markup=False)

    def action_compose(self) -> None:
        self.app.open_composer(Draft(inbox_id=self.inbox.id if self.inbox else None))

    def action_search(self) -> None:
        self.app.open_search(self.inbox)

    def action_domains(self) -> None:
        self.app.open_domains()

    def action_outbox(self) -> None:
        self.app.open_outbox(self.inbox)

    @on(OutboxSelected)
    def open_outbox_everywhere(self, event: OutboxSelected) -> None:
        self.app.open_outbox(self.inbox, everywhere=True, tab=event.tab)

    def action_help(self) -> None:
        self.app.show_keys()

    def action_back(self, quit_on_list: bool) -> None:
        """Back one level: from the reader (or the sidebar) to the thread list; there, `q` quits."""
        if self.focused is not self.thread_list:
            self.thread_list.focus()
            self.remove_class("show-mailboxes")
        elif quit_on_list:
            self.app.request_quit()

    def action_toggle_mailboxes(self) -> None:
        """Show or hide the mailbox tree (hidden by default on narrow terminals)."""
        if self.has_class("narrow"):
            self.toggle_class("show-mailboxes")
            showing = self.has_class("show-mailboxes")
        else:
            self.tree.display = not self.tree.display
            showing = self.tree.display
        (self.tree if showing else self.thread_list).focus()
