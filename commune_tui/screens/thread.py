"""One thread on its own screen (from search results), with the same keys as the main reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header

from ..models import ThreadSummary
from ..widgets.footer import Footer
from ..widgets.reader import Reader
from .thread_actions import ThreadActions

if TYPE_CHECKING:
    from ..app import CommuneApp


class ThreadScreen(ThreadActions):
    app: CommuneApp

    BINDINGS = [Binding("q,escape", "app.pop_screen", "Back", id="thread.back")]

    def __init__(self, thread: ThreadSummary) -> None:
        super().__init__()
        self.thread = thread

    def compose(self) -> ComposeResult:
        yield Header()
        yield Reader(id="reader", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.thread.subject or ""
        self._load()

    @work(exclusive=True)
    async def _load(self) -> None:
        await self.show_in_reader(self.thread)
