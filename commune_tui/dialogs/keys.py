"""`?`: every key of the current screen and the global ones, grouped by where they act."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import ItemGrid, Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..display import line

GROUP_NAMES = {
    "MailboxTree": "Mailboxes", "ThreadList": "Thread list", "Reader": "Reader",
    "MessageView": "Message", "MessageTitle": "Message",
    "MailScreen": "Main screen", "ThreadScreen": "Thread", "ComposeScreen": "Composer",
    "SearchScreen": "Search", "DomainsScreen": "Domains", "CommuneApp": "Everywhere",
}


def _key_names(app_keymap: dict[str, str], binding: Binding) -> str:
    keys = app_keymap.get(binding.id or "", "") or binding.key
    shown = [binding.key_display if binding.key_display and keys == binding.key else k.strip()
             for k in keys.split(",")]
    return ", ".join(dict.fromkeys(shown))


def key_groups(screen: Screen) -> list[tuple[str, list[tuple[str, str]]]]:
    """(group, [(keys, description)]) for the screen, each widget type on it, and the app; only
    bindings with an id (ours, remappable) are listed, with their remapped keys."""
    nodes: list[DOMNode] = [screen, *screen.query("*"), screen.app]
    groups: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    keymap = dict(screen.app._keymap)
    for node in nodes:
        bindings: BindingsMap = node._bindings
        for _, binding in bindings:
            if not binding.id or binding.id in seen or not binding.description:
                continue
            seen.add(binding.id)
            group = GROUP_NAMES.get(type(node).__name__, type(node).__name__)
            groups.setdefault(group, []).append((_key_names(keymap, binding), binding.description))
    return list(groups.items())


class KeysDialog(ModalScreen[None]):
    """Lists the keys; `escape`, `q` or `?` closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="keys.close")]

    def __init__(self, groups: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog keys"):
            yield Static("Keys", classes="dialog-title")
            with (VerticalScroll(id="keys-body"),
                  ItemGrid(min_column_width=34, stretch_height=False)):
                for group, rows in self.groups:
                    text = Text()
                    text.append(group, style="bold")
                    width = max(len(keys) for keys, _ in rows)
                    for keys, description in rows:
                        text.append("\n")
                        text.append_text(line(f"  {keys:<{width}}  "))
                        text.append_text(line(description, style="dim"))
                    yield Static(text, classes="key-group")
            yield Static("escape or ? to close", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
