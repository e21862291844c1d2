"""A long text in a scrollable modal: full headers (`H`), the raw message (`V`), a command's
output."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..display import line, plain


class TextViewDialog(ModalScreen[None]):
    """Shows `text` under `title`; `q` or `escape` closes it, `j`/`k`/space scroll."""

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="text_view.close"),
        Binding("j", "scroll('down')", "Down", show=False, id="text_view.down"),
        Binding("k", "scroll('up')", "Up", show=False, id="text_view.up"),
        Binding("space", "scroll('page')", "Page down", show=False, id="text_view.page"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog text-view"):
            yield Static(line(self.title_text), classes="dialog-title")
            with VerticalScroll(id="text-view-body"):
                yield Static(plain(self.text), id="text-view-text")
            yield Static("q or escape to close", classes="dialog-hint")

    def action_scroll(self, where: str) -> None:
        body = self.query_one("#text-view-body", VerticalScroll)
        {"down": body.scroll_down, "up": body.scroll_up, "page": body.scroll_page_down}[where]()

    def action_close(self) -> None:
        self.dismiss(None)
