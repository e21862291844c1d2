"""Pick a file to attach: type a path or walk the directory tree."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Static


class AttachFileDialog(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="attach.cancel")]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = start or Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("Attach a file", classes="dialog-title")
            yield Input(placeholder="path/to/file (enter to attach)", id="attach-path")
            yield DirectoryTree(self.start, id="attach-tree")
            yield Static("enter on a file attaches it · escape cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        if not path.is_absolute():
            path = self.start / path
        if not path.is_file():
            self.notify(f"No such file: {path}", severity="error", markup=False)
            return
        self.dismiss(path)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(Path(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)
