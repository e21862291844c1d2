"""Waiting for the app in flow tests: settle workers and screens before asserting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.css.query import NoMatches
from textual.pilot import Pilot
from textual.widgets import DirectoryTree
from textual.worker import WorkerCancelled

from commune_tui.screens.compose import ComposeScreen
from commune_tui.widgets.thread_list import ThreadList


async def settle(pilot: Pilot, rounds: int = 3) -> None:
    """Let pending workers finish and the screen refresh."""
    for _ in range(rounds):
        # The live-update worker and a directory tree's loader run for as long as their owner does.
        pending = [w for w in pilot.app.workers
                   if w.group != "live" and not isinstance(w.node, DirectoryTree)]
        try:
            if pending:  # an empty list would mean "every worker" to wait_for_complete
                await asyncio.wait_for(pilot.app.workers.wait_for_complete(pending), 15)
        except WorkerCancelled:
            pass  # superseded by a newer exclusive worker, which the next round waits for
        except TimeoutError:
            raise AssertionError(f"workers still running: {pending}") from None
        await pilot.pause()


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` while the app runs; fail with a clear message if it never holds.

    A widget the condition queries may not be composed yet on a screen just pushed (on a busy machine
    that takes a while): `NoMatches` counts as "not yet".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _holds(condition):
        if loop.time() > deadline:
            raise AssertionError("the app never reached the expected state")
        await pilot.pause(0.05)


async def open_composer(pilot: Pilot) -> ComposeScreen:
    """Press `c` on the main screen and return the composer it opens."""
    await pilot.press("c")
    await settle(pilot)
    composer = pilot.app.screen
    assert isinstance(composer, ComposeScreen)
    return composer


def _holds(condition: Callable[[], bool]) -> bool:
    try:
        return bool(condition())
    except NoMatches:
        return False


def select_thread(app, subject: str) -> None:
    """Highlight the thread with `subject` on the focused thread list."""
    threads = app.screen.query_one(ThreadList)
    row = next(i for i, t in enumerate(threads.ordered()) if t.subject == subject)
    threads.move_cursor(row=row, animate=False)
    threads.focus()


async def read_thread(pilot: Pilot, subject: str) -> None:
    """Open the thread with `subject` in the reader, as `enter` on the list does."""
    select_thread(pilot.app, subject)
    await pilot.press("enter")
    await settle(pilot)
