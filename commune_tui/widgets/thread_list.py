"""The thread list: one row per conversation, pages fetched through the API cursor as you scroll."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.widgets import DataTable

from ..client import ApiError
from ..display import line
from ..formatting import compact_date, named_address
from ..messages import ThreadSelected
from ..models import Page, ThreadSummary
from .triage_keys import triage_bindings

PageLoader = Callable[[str | None], Awaitable[Page]]
PREFETCH_ROWS = 15
DATE_WIDTH = 10
"""`2024-03-15`, the longest date form, always fits."""


class SortableCell:
    """A rendered cell that sorts by a hidden value (newest-first order by timestamp)."""

    def __init__(self, text: Text, sort_value: tuple[str, str]) -> None:
        self.text = text
        self.sort_value = sort_value

    def __rich__(self) -> Text:
        return self.text


class ThreadList(DataTable[object]):
    """Threads of one mailbox, newest first; `enter` opens one."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="threads.down"),
        Binding("k", "cursor_up", "Up", show=False, id="threads.up"),
        Binding("g", "scroll_top", "Top", show=False, id="threads.top"),
        Binding("G", "scroll_bottom", "Bottom", show=False, id="threads.bottom"),
        Binding("r", "screen.reply", "Reply", id="threads.reply"),
        Binding("R", "screen.reply_all", "Reply all", id="threads.reply_all"),
        Binding("f", "screen.forward", "Forward", id="threads.forward"),
        Binding("H", "screen.headers", "Headers", show=False, id="threads.headers"),
        Binding("V", "screen.raw", "Raw message", show=False, id="threads.raw"),
        Binding("vertical_line", "screen.pipe", "Pipe to command", show=False, id="threads.pipe",
                key_display="|"),
        Binding("L", "screen.links", "Links", show=False, id="threads.links"),
        Binding("t", "toggle_selected", "Select", show=False, id="threads.select",
                tooltip="Mark the thread for a bulk d, a, F, N or l"),
        *triage_bindings("threads", footer=True),
    ]

    def __init__(self, clock: Callable[[], datetime], page_size: int = 50, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.page_size = page_size
        self.threads: dict[str, ThreadSummary] = {}
        self.selected: set[str] = set()
        """Threads marked with `t` for a bulk `d`/`a`/`F`/`N`/`l`."""
        self.loader: PageLoader | None = None
        self.next_cursor: str | None = None
        self.has_more = False
        self.loading_more = False
        self.zone: tzinfo | None = None
        self.names: dict[str, str] = {}
        """Address → display name, learnt from messages read and from contacts."""

    def sender_name(self, thread: ThreadSummary) -> str:
        """The newest sender's display name when known, else the address."""
        address = thread.last_sender or ""
        return thread.last_sender_name or self.names.get(address.lower()) or address

    def on_mount(self) -> None:
        self.add_column(" ", key="mark", width=5)
        self.add_column("From", key="from", width=22)
        self.add_column("Subject", key="subject", width=30)
        self.add_column("#", key="count", width=3)
        self.add_column("Date", key="date", width=DATE_WIDTH)
        self.watch(self, "scroll_y", self._maybe_load_more, init=False)

    def on_resize(self) -> None:
        self.fit_columns()

    def fit_columns(self) -> None:
        """Columns by priority: the mark and the whole date always, then sender and subject share
        what is left (the sender up to 22 cells), the message count only when there is room."""
        columns = {key.value: column for key, column in self.columns.items()}
        if len(columns) < 5:
            return
        padding = 2 * self.cell_padding * len(columns)
        free = self.scrollable_content_region.width - padding - columns["mark"].width - DATE_WIDTH
        count = 3 if free >= 40 else 0
        free -= count
        sender = max(8, min(22, free * 2 // 5))
        for key, width in (("date", DATE_WIDTH), ("count", count), ("from", sender),
                           ("subject", max(6, free - sender))):
            columns[key].auto_width = False
            columns[key].width = width
        self._require_update_dimensions = True
        self.refresh()

    def show(self, loader: PageLoader, page: Page) -> None:
        """Replace the rows with the first page of a mailbox; later pages come from `loader`."""
        self.loader = loader
        self.clear()
        self.threads.clear()
        self.selected.clear()
        self._append(page)
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def _append(self, page: Page) -> None:
        self.next_cursor, self.has_more = page.next_cursor, page.has_more and bool(page.next_cursor)
        for thread in page.data:
            if thread.thread_id not in self.threads:
                self.threads[thread.thread_id] = thread
                self.add_row(*self._cells(thread), key=thread.thread_id)

    def _cells(self, thread: ThreadSummary) -> list[Text | SortableCell]:
        unread = thread.unread
        style = "bold" if unread else ""
        mark = Text()  # a base style here would cover the whole cell: the selection mark is its own span
        mark.append("*" if thread.thread_id in self.selected else " ",
                    style="bold reverse" if thread.thread_id in self.selected else "")
        mark.append("●" if unread else " ", style="bold")
        mark.append("⚑" if thread.flagged else " ", style="bold")
        mark.append("@" if thread.has_attachments else " ")
        mark.append("→" if thread.last_direction == "outbound" else " ")
        # The newest message of a thread you answered last is yours; the → mark says so too.
        sender = "You" if thread.last_direction == "outbound" else self.sender_name(thread)
        who = line(sender, style=style, overflow="ellipsis", no_wrap=True)
        subject = line(thread.subject or "(no subject)", style=style, overflow="ellipsis", no_wrap=True)
        if thread.snippet:
            subject.append_text(line("  " + thread.snippet, style="dim"))
        count = Text(str(thread.message_count) if thread.message_count > 1 else "", justify="right")
        when = compact_date(thread.last_message_at, self.clock(), self.zone)
        date = SortableCell(Text(when, justify="right", no_wrap=True),
                            (thread.last_message_at, thread.thread_id))
        return [mark, who, subject, count, date]

    def upsert(self, threads: list[ThreadSummary]) -> None:
        """Add or refresh threads in newest-first order; the highlighted thread stays highlighted."""
        if not threads:
            return
        current = self.current_thread
        for thread in threads:
            known = self.threads.get(thread.thread_id)
            if known is not None and known == thread:
                continue
            self.threads[thread.thread_id] = thread
            if known is None:
                self.add_row(*self._cells(thread), key=thread.thread_id)
            else:
                self.redraw_row(thread.thread_id)
        self.sort("date", key=lambda cell: cell.sort_value, reverse=True)
        if current is not None:
            self.move_cursor(row=self.get_row_index(current.thread_id), animate=False, scroll=False)

    def replace(self, thread: ThreadSummary) -> None:
        """Show a thread's new state (its labels changed) in place."""
        if thread.thread_id in self.threads:
            self.threads[thread.thread_id] = thread
            self.redraw_row(thread.thread_id)

    def remove(self, thread_ids: list[str]) -> None:
        """Take threads off the list (they left this view); the cursor moves to the next one."""
        row = self.cursor_row
        for thread_id in thread_ids:
            if thread_id in self.threads:
                del self.threads[thread_id]
                self.selected.discard(thread_id)
                self.remove_row(thread_id)
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1), animate=False)

    def action_toggle_selected(self) -> None:
        """Mark or unmark the highlighted thread for a bulk action, then move down."""
        thread = self.current_thread
        if thread is None:
            return
        self.selected.symmetric_difference_update({thread.thread_id})
        self.redraw_row(thread.thread_id)
        self.action_cursor_down()

    def next_unread(self) -> ThreadSummary | None:
        """Highlight the first unread thread below the cursor (wrapping around); None if none is."""
        ordered = self.ordered()
        if not ordered:
            return None
        start = self.cursor_row
        for offset in range(1, len(ordered) + 1):
            index = (start + offset) % len(ordered)
            if ordered[index].unread:
                self.move_cursor(row=index, animate=False)
                return ordered[index]
        return None

    def redraw_row(self, thread_id: str) -> None:
        """Draw a thread's row again from what is known of it now (marks, names)."""
        thread = self.threads.get(thread_id)
        if thread is not None:
            for column, value in zip(("mark", "from", "subject", "count", "date"), self._cells(thread)):
                self.update_cell(thread_id, column, value)

    def ordered(self) -> list[ThreadSummary]:
        """The threads in the order shown."""
        return [self.threads[row.key.value] for row in self.ordered_rows if row.key.value in self.threads]

    @property
    def prefetch_rows(self) -> int:
        """How close to the end the cursor or scroll may come before the next page is fetched."""
        return min(PREFETCH_ROWS, self.page_size // 2)

    @property
    def current_thread(self) -> ThreadSummary | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.threads.get(key) if key else None

    def action_scroll_top(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.row_count - self.prefetch_rows:
            self.load_more()
        # The list shows names; the highlighted thread's sender address shows under it.
        thread = self.threads.get(event.row_key.value or "")
        address = thread.last_sender or "" if thread is not None else ""
        self.border_subtitle = line(named_address(address, self.names.get(address.lower())))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        thread = self.threads.get(event.row_key.value or "")
        if thread is not None:
            self.post_message(ThreadSelected(thread))

    def _maybe_load_more(self) -> None:
        if self.max_scroll_y - self.scroll_y <= self.prefetch_rows:
            self.load_more()

    def load_more(self) -> None:
        """Fetch the next page unless one is on its way or there is none."""
        if self.has_more and not self.loading_more and self.loader is not None:
            self.loading_more = True
            self._fetch_next(self.loader, self.next_cursor)

    @work(group="thread-pages")
    async def _fetch_next(self, loader: PageLoader, cursor: str | None) -> None:
        try:
            page = await loader(cursor)
        except ApiError as exc:
            self.notify(f"Could not load more threads: {exc.message}", severity="error", markup=False)
            return
        finally:
            self.loading_more = False
        if loader is self.loader:
            self._append(page)
