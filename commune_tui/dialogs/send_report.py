"""What the server said about the recipients of a sent message (rejected, warned, suppressed)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from ..formatting import clean_line
from ..models import Validation


def report_text(validation: Validation) -> Text:
    text = Text()
    for item in validation.rejected:
        text.append("✗ not sent  ", style="bold red")
        text.append(clean_line(f"{item.email}  {item.reason}") + "\n")
    for email in validation.suppressed:
        text.append("✗ suppressed  ", style="bold red")
        text.append(clean_line(f"{email}  (earlier bounce or complaint)") + "\n")
    for item in validation.warnings:
        text.append("! warning  ", style="bold yellow")
        text.append(clean_line(f"{item.email}  {item.reason}") + "\n")
    return text


class SendReportDialog(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="report.close")]

    def __init__(self, validation: Validation) -> None:
        super().__init__()
        self.validation = validation

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("Sent, with notes about some recipients", classes="dialog-title")
            yield Static(report_text(self.validation), id="send-report")
            yield Static("enter closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
