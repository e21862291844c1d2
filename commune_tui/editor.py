"""Round-trip text through the user's `$VISUAL`/`$EDITOR` while the app is suspended."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from textual.app import App


def editor_command() -> list[str]:
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


def edit_text(app: App, text: str, suffix: str = ".eml.txt") -> str:
    """Open `text` in the editor and return what the user saved (the original text if it fails)."""
    with tempfile.TemporaryDirectory(prefix="commune-") as folder:
        path = Path(folder) / f"draft{suffix}"
        path.write_text(text)
        with app.suspend():
            result = subprocess.run([*editor_command(), str(path)], check=False)
        if result.returncode != 0:
            return text
        return path.read_text()
