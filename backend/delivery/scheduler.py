"""The outbox worker: releases scheduled and approved messages when they are due, expires approvals.

It sleeps until the earliest `due_at` (at most half a second, and is woken when a hold or decision may
have moved that time), then takes due rows 50 at a time: expired approvals become `rejected` with the
reason `expired`; the rest are released (composed, checked again, handed to the outbound queue in one
transaction) and the outbound worker is woken at once, so a released message leaves without waiting
for its next poll. All state is in the `outbox` table: after a crash, whatever was due is simply due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from ..store import outbox as states
from .outbox import decide, release

if TYPE_CHECKING:
    from ..server import Server
    from ..services import Services

log = logging.getLogger("commune.outbox")

POLL_SECONDS = 0.5
BATCH = 50


class OutboxWorker:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.runner: asyncio.Task[None] | None = None
        self.stopping = False

    def wake_soon(self) -> None:
        """Look at the outbox now; safe to call from any thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake.set)

    async def start(self) -> None:
        self.services.outbox.listeners.append(self.wake_soon)
        self.runner = asyncio.create_task(self.run(), name="outbox-worker")

    async def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self.wake_soon in self.services.outbox.listeners:
            self.services.outbox.listeners.remove(self.wake_soon)
        if self.runner is not None:
            await self.runner

    async def run(self) -> None:
        while not self.stopping:
            self.wake.clear()
            busy = False
            try:
                busy = await self.tick()
            except Exception:
                log.exception("releasing due outbox messages failed")
            if busy:
                await asyncio.sleep(0)
                continue
            delay = POLL_SECONDS
            with contextlib.suppress(Exception):
                next_at = await self.services.database.run(self.services.outbox.next_due_at, time.time())
                if next_at is not None:
                    delay = max(0.0, min(delay, next_at - time.time()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def tick(self) -> bool:
        """Handle one batch of due rows; True when there may be more due right now."""
        rows = await self.services.database.run(self.expire, time.time())
        due = [row for row in rows if row["outbox_status"] in states.RELEASABLE]
        if due:
            await release(self.services, due)
        return len(rows) == BATCH

    def expire(self, now: float) -> list:
        """One batch of due rows; the approvals among them have expired and are rejected now."""
        rows = self.services.outbox.due(now, BATCH)
        for row in rows:
            if row["outbox_status"] == states.PENDING:
                decide(self.services, row, (states.PENDING,), states.REJECTED, "message.rejected", None,
                       {"reason": "expired"}, reason="expired", due_at=None)
        return rows


async def start(server: Server) -> None:
    """Component entry: run the outbox worker beside the outbound worker."""
    services = server.services
    if not services.settings.workers_enabled:
        return
    worker = OutboxWorker(services)
    await worker.start()
    server.on_stop(worker.stop)
