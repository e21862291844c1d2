"""Waiting for asynchronous server work (workers, streams) without asserting on how long it takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 15.0) -> T:
    """Re-read a value until `done` holds or the deadline passes; returns the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
