"""A loading spinner that shows only when the wait is long enough to notice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from textual.widget import Widget

SPINNER_DELAY = 0.15
"""Seconds before the spinner appears: drawing it costs more than a fast server's answer takes."""


@contextmanager
def spinner_if_slow(widget: Widget) -> Iterator[None]:
    """Cover `widget` with its loading indicator if the block runs longer than `SPINNER_DELAY`.

    A loading widget cannot hold the focus, so one that had it gets it back when the wait is over.
    """
    had_focus, waiting = False, True

    def show() -> None:
        nonlocal had_focus
        if waiting:  # a tick already on its way when the wait ended must not bring the spinner back
            had_focus = widget.has_focus_within
            widget.loading = True

    timer = widget.set_timer(SPINNER_DELAY, show)
    try:
        yield
    finally:
        waiting = False
        timer.stop()
        widget.loading = False
        if had_focus and widget.screen.focused is None:
            widget.call_after_refresh(widget.focus)
