"""Triage keys shared by the thread list and the reader: they act on the screen's chosen threads."""

from __future__ import annotations

from textual.binding import Binding


def triage_bindings(prefix: str, footer: bool = False) -> list[Binding]:
    """`d` trash, `u` restore, `a` archive, `F` flag, `N` unread, `n` next unread, `l` label; ids
    `<prefix>.trash`, … so each can be remapped per widget. `footer` shows `d` in the footer."""
    return [
        Binding("d", "screen.trash", "Trash", show=footer, id=f"{prefix}.trash"),
        Binding("u", "screen.restore", "Restore", show=False, id=f"{prefix}.restore",
                tooltip="Out of the trash or the archive, back to the inbox"),
        Binding("a", "screen.archive", "Archive", show=False, id=f"{prefix}.archive"),
        Binding("F", "screen.toggle_flag", "Flag", show=False, id=f"{prefix}.flag"),
        Binding("N", "screen.toggle_unread", "Unread", show=False, id=f"{prefix}.unread"),
        Binding("n", "screen.next_unread", "Next unread", show=False, id=f"{prefix}.next_unread"),
        Binding("l", "screen.label", "Label", show=False, id=f"{prefix}.label"),
    ]
