"""Attachment chips: name, type and size; focusable so `s`/`o` act on the one you are on."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..formatting import clean_line, human_size
from ..models import Attachment


def chip_label(attachment: Attachment, state: str = "") -> Text:
    label = Text("📎 ", no_wrap=True)
    label.append(clean_line(attachment.filename), style="bold")
    label.append(clean_line(f"  {attachment.mime_type}  {human_size(attachment.size)}"), style="dim")
    if state:
        label.append(clean_line(f"  {state}"))
    return label


class AttachmentChip(Static, can_focus=True):
    """One attachment of a message in the reader."""

    def __init__(self, attachment: Attachment, **kwargs: object) -> None:
        super().__init__(chip_label(attachment), **kwargs)  # type: ignore[arg-type]
        self.attachment = attachment
