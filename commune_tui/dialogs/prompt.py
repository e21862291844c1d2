"""Small forms as modals: one or more labelled inputs, submitted with enter."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ..display import line, plain


class PromptDialog(ModalScreen[dict[str, str] | None]):
    """Asks for named values; dismisses with them, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, str]],
                 required: tuple[str, ...] = ()) -> None:
        """`fields` are (name, label, placeholder); names in `required` must not be empty."""
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(plain(self.title_text), classes="dialog-title")
            for name, label, placeholder in self.fields:
                yield Label(line(label))
                yield Input(placeholder=placeholder, id=f"field-{name}")
            yield Static("enter to save · escape to cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        values = {name: self.query_one(f"#field-{name}", Input).value.strip() for name, _, _ in self.fields}
        missing = [label for name, label, _ in self.fields if name in self.required and not values[name]]
        if missing:
            self.notify(f"{missing[0]} is required", severity="error", markup=False)
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
