"""A loading spinner that shows only when the wait is long enough to notice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from textual.widget import Widget

SPINNER_DELAY = 0.15
"""Seconds before the spinner appears: drawing it costs more than a fast server's answer takes."""


@contextmanager
def spinner_if_slow(widget: Widget) -> Iterator[None]:
    """Cover `widget` with its loading indicator if the block runs longer than `SPINNER_DELAY`."""
    timer = widget.set_timer(SPINNER_DELAY, lambda: setattr(widget, "loading", True))
    try:
        yield
    finally:
        timer.stop()
        widget.loading = False
