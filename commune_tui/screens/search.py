"""Search threads through the server; results open like any thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Input, Static

from ..client import ApiError
from ..display import line
from ..messages import ThreadSelected
from ..models import Inbox, Message, Page, ThreadSummary
from ..widgets.footer import Footer
from ..widgets.thread_list import ThreadList
from .thread import ThreadScreen
from .thread_actions import ThreadActions

if TYPE_CHECKING:
    from ..app import CommuneApp


class SearchScreen(ThreadActions):
    """A query box over a result list; `enter` in the list opens the thread."""

    app: CommuneApp

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="search.back"),
        Binding("slash", "focus_query", "New search", key_display="/", id="search.query"),
    ]

    def __init__(self, inbox: Inbox | None) -> None:
        super().__init__()
        self.inbox = inbox

    def compose(self) -> ComposeResult:
        yield Header()
        scope = f"in {self.inbox.address}" if self.inbox else "in all inboxes"
        yield Input(placeholder=f"Search {scope}: words, sender, subject… (enter)", id="query")
        yield Static("", id="search-status")
        results = ThreadList(self.app.settings.clock, id="results", classes="pane")
        results.zone, results.names = self.app.settings.timezone, self.app.names
        yield results
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#results").border_title = "Results"
        self.query_one("#query").focus()

    def action_focus_query(self) -> None:
        self.query_one("#query").focus()

    @on(Input.Submitted, "#query")
    def run_search(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._search(event.value.strip())

    @work(exclusive=True)
    async def _search(self, query: str) -> None:
        status = self.query_one("#search-status", Static)
        results = self.query_one(ThreadList)
        status.update(line(f"Searching for “{query}”…"))
        try:
            found = await self.app.client.search_threads(query, self.inbox.id if self.inbox else None)
        except ApiError as exc:
            status.update("")
            self.notify(f"Search failed: {exc.message}", severity="error", markup=False)
            return

        async def no_more_pages(cursor: str | None) -> Page:
            return Page()

        results.show(no_more_pages, Page(data=found))
        status.update(line(f"{len(found)} thread{'s' if len(found) != 1 else ''} match “{query}”"))
        if found:
            results.focus()

    async def thread_for_action(self) -> tuple[ThreadSummary, list[Message]] | None:
        """Reply or forward straight from the highlighted result."""
        thread = self.query_one(ThreadList).current_thread
        if thread is None:
            self.notify("Search first, then pick a result.", severity="warning")
            return None
        return await self.with_messages(thread)

    @on(ThreadSelected)
    def open_result(self, event: ThreadSelected) -> None:
        self.app.push_screen(ThreadScreen(event.thread))
