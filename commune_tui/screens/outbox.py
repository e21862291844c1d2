"""The Outbox: what has not left yet, for one inbox or all of them, in three tabs (awaiting approval,
scheduled, drafts), with a review pane that shows the highlighted message as it will leave."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, TabbedContent, TabPane

from .. import editor
from ..client import ApiError
from ..dialogs.confirm import ConfirmDialog
from ..dialogs.prompt import PromptDialog
from ..display import line
from ..formatting import compact_date, parse_time, short_address
from ..models import Attachment, Draft, Inbox, Message, OutboxMessage, ServerDraft
from ..outbox import TABS, Outbox, load_more, load_outbox
from ..sendtime import local_zone, until
from ..widgets.footer import Footer
from ..widgets.outbox_review import (
    OutboxReview,
    recipients,
    replied_message,
    sender_of,
    subject_of,
)
from .approval_edit import (
    ApprovalComposeScreen,
    approval_edits,
    draft_of,
    message_text,
    parse_message_text,
)

if TYPE_CHECKING:
    from ..app import CommuneApp

TAB_TITLES = {"approvals": "Awaiting approval", "scheduled": "Scheduled", "drafts": "Drafts"}
EMPTY = {
    "approvals": "Nothing is waiting for approval.",
    "scheduled": "Nothing is scheduled.",
    "drafts": "No drafts: ctrl+o in the composer keeps one here.",
}
PREFETCH_ROWS = 10
"""The next page is fetched once the cursor comes this close to the last row fetched."""
TAB_ACTIONS = {"approve": "approvals", "edit_approve": "approvals", "edit_in_editor": "approvals",
               "reject": "approvals",
               "cancel_send": "scheduled", "resume": "drafts"}
"""Keys that act on one tab's rows: the footer shows them only on that tab."""


class OutboxTable(DataTable[Text]):
    """One tab's rows; vim keys like the thread list."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="outbox.down"),
        Binding("k", "cursor_up", "Up", show=False, id="outbox.up"),
        Binding("g", "scroll_top", "Top", show=False, id="outbox.top"),
        Binding("G", "scroll_bottom", "Bottom", show=False, id="outbox.bottom"),
    ]


class OutboxScreen(Screen):
    """Review held mail (`A` approve, `E` edit then approve, `X` reject), cancel scheduled sends (`C`),
    resume drafts (`enter`); `O` switches between one inbox and all of them."""

    app: CommuneApp

    BINDINGS = [
        Binding("1", "tab('approvals')", "Approval", show=False, id="outbox.tab_approvals"),
        Binding("2", "tab('scheduled')", "Scheduled", show=False, id="outbox.tab_scheduled"),
        Binding("3", "tab('drafts')", "Drafts", show=False, id="outbox.tab_drafts"),
        Binding("A", "approve", "Approve", id="outbox.approve"),
        Binding("E", "edit_approve", "Edit+approve", id="outbox.edit",
                tooltip="Edit in the composer, then approve"),
        Binding("ctrl+e", "edit_in_editor", "$EDITOR+approve", show=False, id="outbox.editor",
                tooltip="Edit headers and body in $VISUAL/$EDITOR, then approve"),
        Binding("X", "reject", "Reject", id="outbox.reject"),
        Binding("C", "cancel_send", "Cancel send", id="outbox.cancel"),
        Binding("enter", "resume", "Resume draft", id="outbox.resume"),
        Binding("i", "toggle_detail", "Detail", id="outbox.detail"),
        Binding("O", "toggle_scope", "All/this inbox", id="outbox.scope"),
        Binding("ctrl+r", "refresh", "Refresh", id="outbox.refresh"),
        Binding("q,escape", "app.pop_screen", "Back", id="outbox.back"),
    ]

    def __init__(self, inbox: Inbox | None = None, everywhere: bool = False,
                 tab: str = "approvals") -> None:
        """The outbox of `inbox`, or of all inboxes when `everywhere` (`O` switches)."""
        super().__init__()
        self.home_inbox = inbox
        self.inbox = None if everywhere else inbox
        self.active_tab = tab
        self.outbox = Outbox()
        self.loaded = False
        self.attachments: dict[str, Attachment] = {}
        self.threads: dict[str, list[Message]] = {}
        self.fetching: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="outbox-panes"):
            with TabbedContent(initial=self.active_tab, id="outbox-tabs", classes="pane"):
                for tab in TABS:
                    with TabPane(TAB_TITLES[tab], id=tab):
                        yield OutboxTable(id=f"{tab}-table", cursor_type="row")
            yield OutboxReview(id="outbox-review", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.table("approvals").add_columns("From", "To", "Subject", "Verdict", "Waiting")
        self.table("scheduled").add_columns("From", "To", "Subject", "Sends")
        self.table("drafts").add_columns("From", "To", "Subject", "Saved")
        self.query_one("#outbox-review").border_title = "Review"
        self.show_scope()
        self.table(self.active_tab).focus()
        self.reload()

    def table(self, tab: str) -> OutboxTable:
        return self.query_one(f"#{tab}-table", OutboxTable)

    @property
    def tab(self) -> str:
        return self.active_tab

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tab = TAB_ACTIONS.get(action)
        return tab is None or tab == self.active_tab

    def show_scope(self) -> None:
        self.sub_title = f"Outbox · {self.inbox.address if self.inbox else 'all inboxes'}"

    def now(self) -> datetime:
        """The clock in the configured time zone, else the local one."""
        return self.app.settings.clock().astimezone(self.app.settings.timezone or local_zone())

    def current(self, tab: str | None = None) -> OutboxMessage | ServerDraft | None:
        """The highlighted row's message or draft in `tab` (the active one by default)."""
        tab = tab or self.tab
        table = self.table(tab)
        rows: list[OutboxMessage] | list[ServerDraft] = getattr(self.outbox, tab)
        if not rows or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in rows if _key(r) == key), None)

    # Loading

    @work(group="outbox", exclusive=True)
    async def reload(self, keep: str | None = None) -> None:
        """Fetch the three tabs again, keeping each cursor on its row when it is still there."""
        tabs = self.query_one(TabbedContent)
        # Only the first load shows a spinner: later ones (after every decision or live event) would
        # flash it, and a loading widget gives up the focus.
        tabs.loading = not self.loaded
        try:
            outbox = await load_outbox(self.app.client, self.inbox)
        except ApiError as exc:
            self.notify(f"Could not load the outbox: {exc.message}", severity="error", markup=False)
            return
        finally:
            tabs.loading = False
        self.outbox, self.loaded = outbox, True
        for tab in TABS:
            self.fill(tab, keep)
        self.review()
        if self.focused is None:
            self.table(self.tab).focus()

    def fill(self, tab: str, keep: str | None) -> None:
        """Show `tab`'s rows afresh; the cursor stays on its row, or at its place when that row left."""
        table = self.table(tab)
        before = self.current(tab) if table.row_count else None
        wanted = keep if keep is not None else (_key(before) if before else None)
        place = table.cursor_row
        table.clear()
        rows: list[OutboxMessage] | list[ServerDraft] = getattr(self.outbox, tab)
        self.add_rows(tab, rows)
        count = self.outbox.count(tab)
        title = f"{TAB_TITLES[tab]} ({count})" if rows else TAB_TITLES[tab]
        self.query_one(TabbedContent).get_tab(tab).label = line(title)
        if wanted is not None and any(_key(r) == wanted for r in rows):
            table.move_cursor(row=table.get_row_index(wanted), animate=False)
        elif rows:
            table.move_cursor(row=min(place, len(rows) - 1), animate=False)

    def add_rows(self, tab: str, rows: list[OutboxMessage] | list[ServerDraft]) -> None:
        table, now = self.table(tab), self.now()
        for item in rows:
            table.add_row(*self.cells(item, tab, now), key=_key(item))

    @work(group="outbox-more")
    async def more(self, tab: str) -> None:
        """The next page of `tab`, added below the rows shown (one fetch per tab at a time)."""
        outbox = self.outbox
        if tab in self.fetching:
            return
        self.fetching.add(tab)
        before = len(getattr(outbox, tab))
        try:
            added = await load_more(self.app.client, outbox, tab, self.inbox)
        except ApiError as exc:
            self.notify(f"Could not load more: {exc.message}", severity="error", markup=False)
            return
        finally:
            self.fetching.discard(tab)
        if added and outbox is self.outbox:  # a reload meanwhile shows its own rows
            self.add_rows(tab, getattr(outbox, tab)[before:])
            if self.table(tab).cursor_row >= self.table(tab).row_count - PREFETCH_ROWS:
                self.more(tab)

    def cells(self, item: OutboxMessage | ServerDraft, tab: str, now: datetime) -> list[Text]:
        """One row: sender, recipients, subject, then the tab's own column(s)."""
        to = ", ".join(recipients(item, "to")) or "(nobody yet)"
        cells = [line(short_address(sender_of(item, self.app.inboxes))), line(to), line(subject_of(item))]
        if isinstance(item, ServerDraft):
            cells.append(line(compact_date(item.updated_at or item.created_at, now)))
        elif tab == "approvals":
            verdict = ("✓ ok", "green") if item.validation.empty else ("! check", "bold yellow")
            cells += [line(verdict[0], style=verdict[1]), line(_age(item.created_at, now))]
        else:
            moment = parse_time(item.send_at)
            cells.append(line(until(moment, now) if moment else "?"))
        return cells

    @on(TabbedContent.TabActivated)
    def tab_changed(self, event: TabbedContent.TabActivated) -> None:
        self.active_tab = event.pane.id or self.active_tab
        self.refresh_bindings()
        self.table(self.tab).focus()
        self.review()

    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if table is not self.table(self.tab):
            return
        self.review()
        if self.tab in self.outbox.cursors and event.cursor_row >= table.row_count - PREFETCH_ROWS:
            self.more(self.tab)

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        if self.tab == "drafts":
            self.action_resume()

    def review(self) -> None:
        item = self.current()
        pane = self.query_one(OutboxReview)
        if item is None:
            error = self.outbox.errors.get(self.tab)
            pane.show_note(f"Not available on this server: {error}" if error else EMPTY[self.tab])
            return
        pane.show(item, self.now(), self.app.inboxes, self.attachments, self.replied(item))
        self.fetch_context(item)

    def replied(self, item: OutboxMessage | ServerDraft) -> Message | None:
        messages = self.threads.get(item.thread_id or "")
        return replied_message(messages, item) if messages else None

    @work(group="review", exclusive=True)
    async def fetch_context(self, item: OutboxMessage | ServerDraft) -> None:
        """Attachment metadata and the thread it answers, fetched once, then shown."""
        client = self.app.client
        missing = [a for a in item.attachments if a not in self.attachments]
        found = await asyncio.gather(*(client.get_attachment(a) for a in missing), return_exceptions=True)
        changed = False
        for attachment in found:
            if isinstance(attachment, Attachment):
                self.attachments[attachment.attachment_id] = attachment
                changed = True
        if item.thread_id and item.thread_id not in self.threads:
            try:
                self.threads[item.thread_id] = await client.thread_messages(item.thread_id)
                changed = True
            except ApiError:
                self.threads[item.thread_id] = []
        if changed and self.current() is item:
            self.query_one(OutboxReview).show(item, self.now(), self.app.inboxes, self.attachments,
                                              self.replied(item))

    # Keys

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_refresh(self) -> None:
        self.reload()

    def action_toggle_detail(self) -> None:
        pane = self.query_one(OutboxReview)
        pane.display = not pane.display

    def action_toggle_scope(self) -> None:
        if self.home_inbox is None:
            self.notify("Showing all inboxes: open an inbox first to narrow the Outbox to it")
            return
        self.inbox = None if self.inbox is not None else self.home_inbox
        self.show_scope()
        self.reload()

    def held(self) -> OutboxMessage | None:
        """The highlighted message awaiting approval."""
        item = self.current("approvals")
        return item if isinstance(item, OutboxMessage) else None

    def action_approve(self) -> None:
        item = self.held()
        if item is not None:
            self.decide(item, "approve")

    def action_edit_approve(self) -> None:
        item = self.held()
        if item is not None:
            self.app.push_screen(ApprovalComposeScreen(item), lambda _: self.reload())

    def action_edit_in_editor(self) -> None:
        item = self.held()
        if item is None:
            return
        before = draft_of(item)
        try:
            after = parse_message_text(editor.edit_text(self.app, message_text(before)), before)
        except ValueError as exc:
            self.notify(str(exc), title="Not approved", severity="error", markup=False)
            return
        edits = approval_edits(before, after)
        if not edits:
            self.notify("Nothing changed, so nothing was approved (A approves as it is)", markup=False)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.decide(item, "approve", edits=edits)

        self.app.push_screen(ConfirmDialog(f"Approve “{subject_of(item)}” with your changes to "
                                           f"{', '.join(edits)}?", yes="Approve", no="Keep it held"),
                             confirmed)

    def action_reject(self) -> None:
        item = self.held()
        if item is None:
            return

        def reason(values: dict[str, str] | None) -> None:
            if values:
                self.decide(item, "reject", values["reason"])

        self.app.push_screen(PromptDialog(f"Reject “{subject_of(item)}”",
                                          [("reason", "Reason (kept in the audit log, told to the sender)",
                                            "not for this customer")], required=("reason",)), reason)

    def action_cancel_send(self) -> None:
        item = self.current("scheduled")
        if not isinstance(item, OutboxMessage):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.decide(item, "cancel")

        self.app.push_screen(ConfirmDialog(f"Cancel the scheduled send of “{subject_of(item)}”?",
                                           yes="Cancel the send", no="Keep it"), confirmed)

    @work(group="decide")
    async def decide(self, item: OutboxMessage, verb: str, reason: str = "",
                     edits: dict[str, object] | None = None) -> None:
        """Approve (with `edits`), reject or cancel `item` on the server, then show the outbox as it
        is now."""
        client = self.app.client
        try:
            if verb == "approve":
                await client.approve(item.message_id, edits)
            elif verb == "reject":
                await client.reject(item.message_id, reason)
            else:
                await client.cancel(item.message_id)
        except ApiError as exc:
            self.notify(exc.message, title=f"Could not {verb}", severity="error", markup=False)
            self.reload()
            return
        done = {"approve": "Approved: on its way", "reject": "Rejected", "cancel": "Cancelled"}[verb]
        self.notify(subject_of(item), title=done, markup=False)
        self.app.outbox_changed(None)

    def action_resume(self) -> None:
        item = self.current("drafts")
        if not isinstance(item, ServerDraft):
            return
        self.app.open_composer(Draft(
            inbox_id=item.inbox_id, to=", ".join(item.to), cc=", ".join(item.cc), bcc=", ".join(item.bcc),
            subject=item.subject, body=item.text, thread_id=item.thread_id, draft_id=item.id,
        ), item.attachments)


def _key(item: OutboxMessage | ServerDraft) -> str:
    return item.id if isinstance(item, ServerDraft) else item.message_id


def _age(created_at: str | None, now: datetime) -> str:
    moment = parse_time(created_at)
    return until(moment, now) if moment else ""
