"""`S`: choose one of the servers of the config file."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..config import ServerProfile
from ..display import line


class ServerPicker(ModalScreen[int | None]):
    """Dismisses with the index of the chosen server, or None on escape."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="servers.close")]

    def __init__(self, profiles: list[ServerProfile], current: int) -> None:
        super().__init__()
        self.profiles, self.current = profiles, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Switch server", classes="dialog-title")
            rows = [f"{'●' if n == self.current else ' '} {p.name}  {p.url}"
                    for n, p in enumerate(self.profiles)]
            yield OptionList(*(Option(line(row)) for row in rows), id="server-list")
            yield Static("enter switches · escape closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = self.current

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_index)

    def action_close(self) -> None:
        self.dismiss(None)
