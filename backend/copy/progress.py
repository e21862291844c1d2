"""A progress line on a terminal (redrawn in place), or plain lines when the stream is not a terminal."""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 28
REDRAW_EVERY = 0.1
"""Seconds between redraws of a terminal's line."""
LOG_EVERY = 5.0
"""Seconds between the plain lines written to a log or pipe."""


def human_bytes(count: float) -> str:
    """`1.5 MB`-style sizes (powers of 1000, like the rest of the project's figures)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """One task at a time: `start(label, total, done)`, `advance(n, nbytes)`, `finish()`."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.label = ""
        self.total = self.done = self.bytes = 0
        self._started = self._shown = 0.0
        self._done_at_start = 0

    def start(self, label: str, total: int, done: int = 0, nbytes: int = 0) -> None:
        """Begin a task of `total` items, `done` of them already finished by an earlier run."""
        self.label, self.total, self.done, self.bytes = label, total, done, nbytes
        self._done_at_start = done
        self._started = self._shown = time.monotonic()
        if self.tty:
            self._draw()
        elif done:
            self._write(f"{label}: resuming at {done:,} of {total:,}\n")

    def advance(self, count: int, nbytes: int = 0) -> None:
        self.done += count
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._shown >= (REDRAW_EVERY if self.tty else LOG_EVERY):
            self._shown = now
            if self.tty:
                self._draw()
            else:
                self._write(f"{self.label}: {self._figures()}\n")

    def note(self, text: str) -> None:
        """Say what the task is doing after its last item (e.g. building indexes)."""
        if self.tty:
            self._draw(f"  {text}…")
        else:
            self._write(f"{self.label}: {text}\n")

    def finish(self) -> None:
        if self.tty:
            self._draw()
            self._write("\n")
        else:
            elapsed = time.monotonic() - self._started
            size = f" ({human_bytes(self.bytes)})" if self.bytes else ""
            self._write(f"{self.label}: {self.done:,}/{self.total:,}{size} in {elapsed:.1f} s, done\n")

    def _figures(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = (self.done - self._done_at_start) / elapsed
        size = f", {human_bytes(self.bytes)}" if self.bytes else ""
        return f"{self.done:,}/{self.total:,}{size}, {rate:,.0f}/s"

    def _draw(self, suffix: str = "") -> None:
        share = self.done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * min(share, 1.0))
        bar = "█" * filled + "░" * (BAR_WIDTH - filled)
        self._write(f"\r{self.label:<22} {bar} {share:4.0%}  {self._figures()}{suffix}\x1b[K")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
