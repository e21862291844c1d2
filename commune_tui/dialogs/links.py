"""The links of a message, numbered; `enter` (or the number) opens one in `$BROWSER`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..display import line


class LinksDialog(ModalScreen[str | None]):
    """Dismisses with the chosen URL, or None on escape."""

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="links.close"),
        Binding("j", "cursor('down')", "Down", show=False, id="links.down"),
        Binding("k", "cursor('up')", "Up", show=False, id="links.up"),
    ] + [Binding(str(n), f"choose({n})", str(n), show=False) for n in range(1, 10)]

    def __init__(self, links: list[str]) -> None:
        super().__init__()
        self.links = links

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog links"):
            yield Static(line(f"Links ({len(self.links)})"), classes="dialog-title")
            yield OptionList(*(Option(line(f"[{n}] {url}"), id=str(n))
                               for n, url in enumerate(self.links, 1)), id="link-list")
            yield Static("enter opens in $BROWSER · escape closes", classes="dialog-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.links[event.option_index])

    def action_cursor(self, where: str) -> None:
        options = self.query_one(OptionList)
        options.action_cursor_down() if where == "down" else options.action_cursor_up()

    def action_choose(self, number: int) -> None:
        if number <= len(self.links):
            self.dismiss(self.links[number - 1])

    def action_close(self) -> None:
        self.dismiss(None)
