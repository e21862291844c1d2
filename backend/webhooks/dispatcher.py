"""The webhook worker: POSTs due deliveries, signed, and retries failures with backoff and jitter.

All state lives in `webhook_deliveries`, so a restart resumes where the last run stopped: a delivery
that was in flight when the process died is simply sent again (receivers dedupe on the delivery id).
Each node claims the deliveries it attempts with a lease (store/leases.py), renewed while they run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from ..netpolicy import is_public
from ..util import now_iso
from .payload import (
    attachment_rows,
    encode,
    inbound_payload,
    outcome_payload,
    signature,
    wants_inbound,
)
from .targets import RefusedTarget, UnresolvedTarget, vet

if TYPE_CHECKING:
    from ..server import Server
    from ..services import Services

log = logging.getLogger("commune.webhooks")

POLL_SECONDS = 1.0
CONCURRENCY = 16
PER_HOST = 4
MAX_RESPONSE_BYTES = 64 * 1024
ERROR_SNIPPET = 300
USER_AGENT = "Commune-Webhooks/1"


def backoff(settings_base: float, settings_max: float, failures: int) -> float:
    """Exponential with equal jitter: the n-th retry waits between half and all of base·2ⁿ⁻¹."""
    ceiling = min(settings_max, settings_base * 2 ** (failures - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class WebhookDispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.webhooks
        self.loop: asyncio.AbstractEventLoop | None = None
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.host_load: Counter[str] = Counter()
        self._stopping = False

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # No redirects (a 3xx is a failed attempt) and no proxies from the environment.
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         timeout=self.settings.webhook_timeout)
        self.store.listeners.append(self.wake)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        # A flag as well as the cancel: on Python 3.11 `wait_for` can swallow a cancellation.
        self._stopping = True
        self.wake()
        if self.wake in self.store.listeners:
            self.store.listeners.remove(self.wake)
        tasks = [t for t in (self._task, *self.in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        """Look for due deliveries now; safe to call from any thread."""
        if self.loop is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._wakeup.set()
        else:
            self.loop.call_soon_threadsafe(self._wakeup.set)

    # the ingest hook ------------------------------------------------------------------------
    def on_new_message(self, conn: sqlite3.Connection, inbox: dict, message: dict) -> None:
        """Inside the ingest transaction: queue the inbox's webhook, so it commits with the message."""
        if message.get("direction") != "inbound" or not inbox.get("webhook_endpoint"):
            return
        if not wants_inbound(inbox.get("webhook_events")):
            return
        attachments = attachment_rows(conn, inbox["org_id"], message.get("attachments") or [])
        body = encode(inbound_payload(inbox, message, attachments))
        self.store.enqueue(conn, inbox["org_id"], inbox["id"], message["message_id"],
                           inbox["webhook_endpoint"], "email.received", body, time.time())

    # the loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            held_back = False
            try:
                held_back = await self._dispatch_due()
            except Exception:
                log.exception("webhook dispatcher failed to read due deliveries")
            await self._sleep(held_back)

    def _claim(self, in_flight: list[str]) -> list[dict]:
        """Queue the webhooks of new delivery outcomes, renew the leases of the attempts in flight, then
        claim (lease to this node) up to four times the free slots of due deliveries."""
        self.store.queue_delivery_outcomes(outcome_payload)
        self.store.leases.renew(in_flight)
        free = CONCURRENCY - len(in_flight)
        return self.store.due(time.time(), free * 4) if free > 0 else []

    async def _dispatch_due(self) -> bool:
        """Claim due deliveries and start their attempts; True when some had to wait for their host's
        slots (those are given back, for this node's next turn or another node)."""
        rows = await self.services.database.run(self._claim, list(self.in_flight))
        free = CONCURRENCY - len(self.in_flight)
        held_back = False
        unstarted: list[str] = []
        for row in rows:
            host = (urlsplit(row["endpoint"]).hostname or "").lower()
            if free == 0 or row["id"] in self.in_flight or self.host_load[host] >= PER_HOST:
                held_back = held_back or self.host_load[host] >= PER_HOST
                unstarted.append(row["id"])
                continue
            free -= 1
            self.host_load[host] += 1
            task = asyncio.create_task(self._attempt(row))
            self.in_flight[row["id"]] = task
            task.add_done_callback(lambda _t, key=row["id"], host=host: self._finished(key, host))
        if unstarted:
            await self.services.database.run(self.store.release, unstarted)
        return held_back

    def _finished(self, delivery_id: str, host: str) -> None:
        self.in_flight.pop(delivery_id, None)
        self.host_load[host] -= 1
        self.wake()

    async def _sleep(self, held_back: bool) -> None:
        delay = POLL_SECONDS
        next_at = None
        if len(self.in_flight) < CONCURRENCY:
            next_at = await self.services.database.run(self.store.next_due_at, time.time())
        if next_at is not None and not held_back:
            delay = max(0.0, min(delay, next_at - time.time()))
        try:
            await asyncio.wait_for(self._wakeup.wait(), delay)
        except TimeoutError:
            pass

    # one attempt ---------------------------------------------------------------------------------
    async def _attempt(self, row: dict) -> None:
        number = row["attempts"] + 1
        started = time.monotonic()
        entry: dict = {"attempt": number, "at": now_iso(), "http_status": None, "error": None}
        permanent = False
        try:
            entry["http_status"], entry["error"] = await self._post(row, number)
        except (RefusedTarget, LookupError) as exc:
            entry["error"], permanent = str(exc), True
        except UnresolvedTarget as exc:
            entry["error"] = str(exc)
        except (httpx.TimeoutException, TimeoutError):
            entry["error"] = f"timed out after {self.settings.webhook_timeout:g}s"
        except httpx.HTTPError as exc:
            entry["error"] = f"{exc.__class__.__name__}: {exc}"[:ERROR_SNIPPET]
        except Exception as exc:  # never let one odd delivery stop the worker; retry it later
            log.exception("webhook %s attempt %s failed unexpectedly", row["id"], number)
            entry["error"] = f"internal error: {exc.__class__.__name__}"
        entry["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        await self.services.database.run(self._record, row, entry, permanent)

    async def _post(self, row: dict, number: int) -> tuple[int, str | None]:
        """Send once; returns the HTTP status and an error text (None on a 2xx)."""
        assert self._client is not None
        current = await self.services.database.run(self.store.current_webhook, row["inbox_id"])
        if current is None:
            raise LookupError("the inbox or its webhook no longer exists")
        # A corrected endpoint applies to deliveries still pending or retried by hand.
        row["endpoint"], secret = current
        target = await vet(row["endpoint"], self.services.resolver, self.settings.webhook_allow_private)
        body = row["payload"].encode("utf-8")
        timestamp = int(time.time() * 1000)  # fresh on every attempt, signed with the body
        headers = {
            **target.headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-commune-signature": signature(secret, timestamp, body),
            "x-commune-timestamp": str(timestamp),
            "x-commune-delivery-id": row["id"],
            "x-commune-attempt": str(number),
            "x-commune-event": row["event"],
        }
        request = self._client.build_request("POST", target.url, content=body, headers=headers,
                                             extensions=target.extensions)
        # One deadline for the whole exchange, so a receiver that drips bytes cannot hold a slot.
        async with asyncio.timeout(self.settings.webhook_timeout):
            response = await self._client.send(request, stream=True)
            public = _answered_from_public_address(response)
            try:
                received = bytearray()
                async for chunk in response.aiter_raw():
                    received.extend(chunk[: MAX_RESPONSE_BYTES - len(received)])
                    if len(received) >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
        if response.is_success:
            return response.status_code, None
        # A private service's answer is never shown, even where the operator lets webhooks reach one.
        text = received[:ERROR_SNIPPET].decode("utf-8", "replace").strip() if public else ""
        if response.is_redirect:
            return response.status_code, "redirects are not followed"
        return response.status_code, f"HTTP {response.status_code}" + (f": {text}" if text else "")

    def _record(self, row: dict, entry: dict, permanent: bool) -> None:
        ok = entry["error"] is None
        failures = row["attempts"] + 1 - row["retry_base"]
        if ok:
            status, next_at = "success", None
        elif permanent or failures >= self.settings.webhook_max_attempts:
            status, next_at = "failed", None
        else:
            delay = backoff(self.settings.webhook_backoff, self.settings.webhook_backoff_max, failures)
            entry["retry_in"] = round(delay, 3)
            status, next_at = "pending", time.time() + delay
        entry["endpoint"] = row["endpoint"]
        self.store.record_attempt(row["id"], row["endpoint"], entry, status, next_at)
        if not ok:
            log.info("webhook %s attempt %s failed: %s", row["id"], entry["attempt"], entry["error"])


def _answered_from_public_address(response: httpx.Response) -> bool:
    """Whether the connection that carried `response` goes to a public address."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    return bool(peer) and is_public(peer[0])


async def start(server: Server) -> None:
    """Component entry: run the dispatcher and hook it into mail ingest."""
    services = server.services
    dispatcher = WebhookDispatcher(services)
    services.mail.tx_hooks.append(dispatcher.on_new_message)
    if not services.settings.workers_enabled:
        return
    await dispatcher.start()
    server.on_stop(dispatcher.stop)
