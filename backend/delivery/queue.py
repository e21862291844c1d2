"""The outbound worker: sends each due `outbound_queue` row to its recipient and records what happened.

All state lives in the table (status, attempts, next attempt time), so a restart resumes where the
last run stopped; a row that was being sent when the process died is simply sent again. Each node
claims the rows it sends with a lease (store/leases.py), renewed while the send runs: with several
nodes on one database a row is sent by one of them, and by another only once its node died. The worker
polls twice a second and is woken at once when a send queues mail. Temporary failures come back
with exponential backoff and jitter until `delivery_max_age`; 5xx answers bounce and suppress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..events import EventBus
from ..mail.dkim import sign_for_domain
from ..store.database import after_commit
from ..store.delivery import QueueItem
from ..util import parse_iso
from .bounces import return_path
from .transports import Outcome, Transport, make_transport

if TYPE_CHECKING:
    from ..server import Server
    from ..services import Services

log = logging.getLogger("commune.delivery")
T = TypeVar("T")

POLL_SECONDS = 0.5
SUPPRESSION_REASONS = {"bounced": "hard_bounce", "failed": "permanent_failure"}


class DeliveryLoop:
    """An event loop of its own, in a thread, for the way out: signing and the SMTP conversation.

    A transaction with a relay is four round trips, and on the server's loop each answer waited its turn
    behind every request being served: under load a message's way out took several times its send. Here
    an answer waits at most for the interpreter's switch interval.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="commune-delivery", daemon=True)
        self.thread.start()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, run on the delivery loop; cancelling the caller cancels it there too."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    async def close(self) -> None:
        """End what still runs there, then the loop and its thread."""
        await self.run(_finish_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join)
        self.loop.close()


async def _finish_tasks() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_default_executor()


def publish_status(events: EventBus, org_id: str, event: dict) -> None:
    """Announce one delivery transition on the event bus."""
    events.publish("delivery.status", org_id, event, event.get("inbox_id"), event.get("domain_id"))


class OutboundWorker:
    def __init__(self, services: Services, transport: Transport) -> None:
        self.services = services
        self.settings = services.settings
        self.transport = transport
        """Used only on `outside`, the delivery loop."""
        self.outside = DeliveryLoop()
        self.wake = asyncio.Event()
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.runner: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.stopping = False

    def on_new_message(self, conn: sqlite3.Connection, inbox: dict, message: dict) -> None:
        """Ingest hook: a sent message may have queued rows, so look at the queue once the commit is done."""
        if message.get("direction") == "outbound":
            after_commit(conn, self.wake_soon)

    def wake_soon(self) -> None:
        """Look at the queue now; safe to call from any thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake.set)

    async def start(self) -> None:
        self.runner = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop picking rows, give sends in progress a moment to finish, then cancel the rest."""
        # A flag rather than cancelling the runner: on Python 3.11 `wait_for` can swallow a cancellation
        # that arrives just as the wake event fires.
        self.stopping = True
        self.wake.set()
        if self.runner is not None:
            await self.runner
        if self.in_flight:
            await asyncio.wait(list(self.in_flight.values()), timeout=5)
        for task in self.in_flight.values():
            task.cancel()
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        try:
            await self.outside.run(self.transport.close())
        finally:
            await self.outside.close()

    async def run(self) -> None:
        while not self.stopping:
            # Cleared before looking, so a send committed while the claim runs (in a thread on
            # PostgreSQL) wakes the next look at once instead of after the poll interval.
            self.wake.clear()
            try:
                await self.pick()
            except Exception:
                log.exception("reading the outbound queue failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)

    async def pick(self) -> None:
        """Claim due rows up to the concurrency limit and start a send for each."""
        claimed = await self.services.database.run(self._claim, list(self.in_flight))
        for item in claimed:
            if item.id in self.in_flight:  # its lease ran out while it was being sent; it is ours again
                continue
            task = asyncio.create_task(self.deliver(item))
            self.in_flight[item.id] = task
            task.add_done_callback(lambda _, key=item.id: self.finished(key))

    def _claim(self, in_flight: list[str]) -> list[QueueItem]:
        """Renew the leases of the sends in flight, then lease due rows up to the concurrency limit."""
        self.services.delivery.leases.renew(in_flight)
        room = self.settings.delivery_concurrency - len(in_flight)
        if room <= 0:
            return []
        # Rows in flight are leased to this node, so the claim returns only rows not being sent.
        return self.services.delivery.due(time.time(), room)

    def finished(self, key: str) -> None:
        self.in_flight.pop(key, None)
        self.wake.set()

    async def deliver(self, item: QueueItem) -> None:
        try:
            outcome = await self.attempt(item)
            if outcome is None:  # the lease ran out before the hand-off: the row is another node's now
                log.info("gave up %s to %s: its lease ran out before it was sent", item.message_id, item.recipient)
                return
        except Exception as exc:  # a bug must not kill the worker or lose the row: retry later
            log.exception("delivery of %s to %s failed unexpectedly", item.message_id, item.recipient)
            outcome = Outcome("deferred", f"Internal error: {type(exc).__name__}")
        await self.services.database.run(self.record, item, outcome)

    async def attempt(self, item: QueueItem) -> Outcome | None:
        """Send one row; None when this node lost the row's lease before handing the message over."""
        suppressed, domain = await self.services.database.run(self.suppressed_and_domain, item)
        if suppressed:
            return Outcome("failed", "Recipient is on the suppression list", suppress=False)
        return await self.outside.run(self.sign_and_send(item, domain))

    async def sign_and_send(self, item: QueueItem, domain: dict | None) -> Outcome | None:
        """On the delivery loop: the stored message, signed, to the transport, if the row is still ours."""
        # Reading and signing a large message takes long enough to matter, so it happens in a thread.
        signed = await asyncio.get_running_loop().run_in_executor(None, self.signed_bytes, item, domain)
        if signed is None:
            return Outcome("failed", "The message's content is missing", suppress=False)
        mail_from = return_path(item.id, domain["name"]) if domain else item.sender
        if not await self.services.database.run(self.services.delivery.leases.hold, item.id):
            return None
        return await self.transport.send(mail_from, item.recipient, signed)

    def suppressed_and_domain(self, item: QueueItem) -> tuple[bool, dict | None]:
        """Whether the recipient is suppressed now, and the sending domain (for DKIM and the return path)."""
        services = self.services
        return (services.delivery.is_suppressed(item.org_id, item.recipient),
                services.domains.get_domain_any(item.domain_id))

    def signed_bytes(self, item: QueueItem, domain: dict | None) -> bytes | None:
        """The stored message, DKIM-signed for its domain; None when its bytes are gone."""
        blobs = self.services.blobs
        if not item.raw_sha256 or not blobs.exists(item.org_id, item.raw_sha256):
            return None
        return sign_for_domain(blobs.get(item.org_id, item.raw_sha256), domain)

    def record(self, item: QueueItem, outcome: Outcome) -> None:
        kind, detail, next_at = outcome.kind, outcome.detail, None
        if kind == "deferred":
            next_at = time.time() + self.backoff(item.attempts)
            if next_at > parse_iso(item.created_at).timestamp() + self.settings.delivery_max_age:
                kind, detail = "failed", f"Gave up retrying; last error: {detail}"
        # Giving up after temporary failures says nothing about the address, so it is not suppressed.
        reason = SUPPRESSION_REASONS.get(outcome.kind) if outcome.suppress else None
        event = self.services.delivery.transition(item, kind, detail, next_at, reason)
        publish_status(self.services.events, item.org_id, event)

    def backoff(self, attempts: int) -> float:
        """Exponential delay from `delivery_backoff`, capped, with ±20 % jitter so retries spread out."""
        delay = min(self.settings.delivery_backoff * 2 ** min(attempts, 30), self.settings.delivery_backoff_max)
        return delay * random.uniform(0.8, 1.2)


async def start(server: Server) -> None:
    """Component entry: run the outbound worker and wake it whenever a send is committed."""
    services = server.services
    if not services.settings.workers_enabled:
        return
    worker = OutboundWorker(services, make_transport(services.settings, services.resolver))
    services.mail.tx_hooks.append(worker.on_new_message)
    services.delivery.listeners.append(worker.wake_soon)
    await worker.start()
    server.on_stop(worker.stop)
