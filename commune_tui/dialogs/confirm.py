"""Yes/no question as a modal: `y`/enter confirms, `n`/escape declines."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ..display import line, plain


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "decline", "No", id="confirm.no"),
        Binding("y", "confirm", "Yes", id="confirm.yes"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(plain(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(line(self.yes), variant="primary", id="yes")
                yield Button(line(self.no), id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)
