"""Text for widgets: every string a widget shows becomes Rich `Text`, never markup, cleaned for the terminal.

Textual parses a plain `str` given to `Static`, `Label`, `update`, a border title, a table cell or an
option as markup, so a subject like `[@click=app.quit]` would become an action. These helpers are the
one way strings reach widgets; `tests/tui/test_markup_lint.py` keeps it that way.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from .formatting import clean_line, clean_text


def plain(value: str | None, style: str = "", **options: Any) -> Text:
    """Text of several lines shown exactly as written: bodies, dialog text, error details."""
    return Text(clean_text(value), style=style, **options)


def line(value: str | None, style: str = "", **options: Any) -> Text:
    """One line shown exactly as written: subjects, names, addresses, file names, cells, titles."""
    return Text(clean_line(value), style=style, **options)
