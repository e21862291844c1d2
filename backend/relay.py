"""Events across nodes on PostgreSQL: `NOTIFY` out, `LISTEN` in, on two connections of their own.

Every event published on this node is queued (never blocking the event loop) for a sender thread, which
sends what has gathered in one transaction: one `pg_notify` per event, its JSON naming this node. A
notification carries at most 8000 bytes, so an event larger than `INLINE_BYTES` (a message with a long
body) goes into `event_payloads` in the same transaction and the notification carries the row's id;
rows older than `PAYLOAD_TTL` seconds are removed as new ones are written. A listener thread receives
the other nodes' notifications (PostgreSQL delivers them in commit order) and hands each event to the
local bus with `EventBus.receive`, which gives it this node's next id. Signals travel the same way: a
name another node acts on (`keys.forget`: drop the cached API keys after a revocation on another node).

If the database connection drops, both threads reconnect with a growing pause; events published while
the sender is disconnected are kept (up to `MAX_QUEUED`) and sent once it is back, events other nodes
published while the listener was disconnected are missed, as a stream that reconnects would miss them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .coordination import shared
from .events import Event, EventBus

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("commune.relay")

CHANNEL = "commune_events"
INLINE_BYTES = 7000
PAYLOAD_TTL = 120.0
MAX_QUEUED = 10_000
BATCH = 200
RECONNECT_MAX = 5.0
FORGET_KEYS = "keys.forget"


def encode(node: str, event: Event) -> str:
    return json.dumps({"node": node, "type": event.type, "org": event.org_id, "inbox": event.inbox_id,
                       "domain": event.domain_id, "data": event.data},
                      separators=(",", ":"), ensure_ascii=False, default=str)


class PostgresRelay:
    def __init__(self, conninfo: str, node_id: str, bus: EventBus) -> None:
        self.conninfo = conninfo
        self.node_id = node_id
        self.bus = bus
        self.outgoing: queue.Queue[Event | str | None] = queue.Queue(MAX_QUEUED)
        self.handlers: dict[str, Callable[[], None]] = {}
        """What this node does on another node's signal, by name."""
        self.stopping = threading.Event()
        self.listening = threading.Event()
        """Set once the listener's `LISTEN` is in place (and again after each reconnection)."""
        self.threads = [threading.Thread(target=self._keep(self._send), name="relay-send", daemon=True),
                        threading.Thread(target=self._keep(self._listen), name="relay-listen", daemon=True)]
        self.dropped = 0

    def start(self, timeout: float = 10.0) -> None:
        for thread in self.threads:
            thread.start()
        if not self.listening.wait(timeout):
            log.warning("the event relay is not listening yet; other nodes' events arrive once it is")

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(queue.Full):
            self.outgoing.put_nowait(None)
        for thread in self.threads:
            thread.join(5)

    def send(self, event: Event | str) -> None:
        """Queue an event, or a signal's name, for the other nodes (never blocks)."""
        try:
            self.outgoing.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def signal(self, name: str) -> Callable[[], None]:
        """A callable that sends the signal `name` to the other nodes."""
        return lambda: self.send(name)

    # threads -----------------------------------------------------------------------------------
    def _keep(self, body: Any) -> Any:
        """Run `body(connection)` on a fresh connection until stopped, reconnecting after failures."""
        import psycopg

        def run() -> None:
            pause = 0.1
            while not self.stopping.is_set():
                try:
                    with psycopg.connect(self.conninfo, autocommit=True) as conn:
                        pause = 0.1
                        body(conn)
                except Exception:
                    if self.stopping.is_set():
                        return
                    log.exception("event relay connection failed; reconnecting in %.1fs", pause)
                    self.listening.clear()
                    self.stopping.wait(pause)
                    pause = min(pause * 2, RECONNECT_MAX)

        return run

    def _send(self, conn: Any) -> None:
        cleaned = 0.0
        while True:
            event = self.outgoing.get()
            batch: list[Event | str] = []
            while event is not None:
                batch.append(event)
                if len(batch) >= BATCH:
                    break
                try:
                    event = self.outgoing.get_nowait()
                except queue.Empty:
                    break
            if batch:
                with conn.transaction():
                    for item in batch:
                        payload = encode(self.node_id, item) if isinstance(item, Event) else json.dumps(
                            {"node": self.node_id, "signal": item})
                        if len(payload.encode()) > INLINE_BYTES:
                            row = conn.execute("INSERT INTO event_payloads (payload, created_at) VALUES (%s, %s)"
                                               " RETURNING id", (payload, time.time())).fetchone()
                            payload = json.dumps({"node": self.node_id, "ref": row[0]})
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    if time.monotonic() - cleaned > PAYLOAD_TTL / 4:
                        cleaned = time.monotonic()
                        conn.execute("DELETE FROM event_payloads WHERE created_at < %s",
                                     (time.time() - PAYLOAD_TTL,))
            if event is None:
                return  # stopping

    def _listen(self, conn: Any) -> None:
        conn.execute(f"LISTEN {CHANNEL}")
        self.listening.set()
        while not self.stopping.is_set():
            # Back as soon as a packet of notifications is in (queries on the connection wait until then).
            notes = [note.payload for note in conn.notifies(timeout=0.5, stop_after=1)]
            for payload in notes:
                message = json.loads(payload)
                if message.get("node") == self.node_id:
                    continue
                if "signal" in message:
                    handler = self.handlers.get(message["signal"])
                    if handler is not None:
                        handler()
                    continue
                if "ref" in message:
                    row = conn.execute("SELECT payload FROM event_payloads WHERE id = %s",
                                       (message["ref"],)).fetchone()
                    if row is None:
                        continue  # removed after PAYLOAD_TTL: this node was too far behind
                    message = json.loads(row[0])
                self.bus.receive(message["type"], message["org"], message["data"], message.get("inbox"),
                                 message.get("domain"))


async def start(server: Server) -> None:
    """Component entry: on a shared database, relay this node's events to the others and theirs here."""
    services = server.services
    if not shared(services.database):
        return
    relay = PostgresRelay(services.database.url, services.node_id, services.events)
    relay.handlers[FORGET_KEYS] = services.keys.drop
    await asyncio.to_thread(relay.start)
    services.events.relay = relay
    services.keys.listeners.append(forget := relay.signal(FORGET_KEYS))

    async def stop() -> None:
        services.events.relay = None
        services.keys.listeners.remove(forget)
        await asyncio.to_thread(relay.stop)

    server.on_stop(stop)
