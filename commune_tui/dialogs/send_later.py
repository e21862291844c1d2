"""Ask when to send: a time in words or ISO 8601, read back as you type, refused when it cannot be."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ..display import line, plain
from ..sendtime import EXAMPLES, SendTimeError, describe, local_zone, parse_send_time


class SendLaterDialog(ModalScreen[datetime | None]):
    """Dismisses with the chosen moment (aware, in the local zone), or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="send_later.cancel")]

    def __init__(self, clock: Callable[[], datetime], zone: tzinfo | None = None,
                 title: str = "Send later") -> None:
        super().__init__()
        self.clock = clock
        self.zone = zone or local_zone()
        self.title_text = title

    def now(self) -> datetime:
        return self.clock().astimezone(self.zone)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(line(self.title_text), classes="dialog-title")
            yield Input(placeholder="in 2h, tomorrow 09:00, …", id="send-at")
            yield Static("", id="send-at-verdict")
            yield Static(plain(f"{EXAMPLES}\nenter schedules · escape goes back to the draft"),
                         classes="dialog-hint")

    def on_input_changed(self, event: Input.Changed) -> None:
        verdict = self.query_one("#send-at-verdict", Static)
        if not event.value.strip():
            verdict.update("")
            return
        try:
            moment = parse_send_time(event.value, self.now())
        except SendTimeError as exc:
            verdict.update(line(str(exc), style="red"))
        else:
            verdict.update(line(f"→ {describe(moment, self.now())}", style="bold green"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            moment = parse_send_time(event.value, self.now())
        except SendTimeError as exc:
            self.notify(str(exc), title="Not scheduled", severity="error", markup=False)
            return
        self.dismiss(moment)

    def action_cancel(self) -> None:
        self.dismiss(None)
