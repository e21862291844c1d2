"""In-process event bus: live events for SSE streams, the terminal client and workers.

Events carry a monotonically increasing id; a bounded backlog lets a stream resume from
`Last-Event-ID`. `publish` is safe to call from any thread.

With several nodes on one database a `Relay` carries each event published here to the other nodes,
which `receive` it into their own bus (backlog and streams), so a stream on any node sees mail that
arrived on any node. Ids are this node's own: every event, published here or received, takes the next
id of the node's bus, so ids grow strictly along every stream and `Last-Event-ID` works on the node that
gave it. An id is also the node's clock in milliseconds whenever events are rarer than one a
millisecond (`max(previous + 1, now)`), so the ids of different nodes roughly agree in time: a client
that reconnects to another node with the id it last saw gets that node's backlog from about the same
moment (the events around it may come twice or, within the relay's delay of a few milliseconds, be
missed), or a `resync` when the id is outside that node's backlog.

Delivery costs one wake-up of each subscriber's loop per batch of events, not one per subscriber: the
events published until the loop runs are handed over together, each subscription receiving its share in
id order through `Subscription.offer`. A subscription with a `sink` (a live stream writing straight to
its connection) takes them there without waking any task; otherwise they go to its bounded queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

BACKLOG = 1000


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    org_id: str
    data: dict[str, Any]
    inbox_id: str | None = None
    domain_id: str | None = None


@dataclass(eq=False)
class Subscription:
    org_id: str
    queue: asyncio.Queue[Event]
    loop: asyncio.AbstractEventLoop
    inbox_id: str | None = None
    domain_id: str | None = None
    types: frozenset[str] | None = None
    dropped: int = field(default=0)
    sink: Callable[[Sequence[Event]], bool] | None = None
    """Takes events at once, outside any task (True), or declines them (False): they are queued instead."""

    def wants(self, event: Event) -> bool:
        if event.org_id != self.org_id:
            return False
        if self.inbox_id is not None and event.inbox_id != self.inbox_id:
            return False
        if self.domain_id is not None and event.domain_id != self.domain_id:
            return False
        return self.types is None or event.type in self.types

    def offer(self, events: Sequence[Event]) -> None:
        """Hand over events in id order, on the subscription's loop: to the sink when it takes them (and
        nothing queued is waiting ahead of them), else to the queue, counting those it has no room for."""
        if self.sink is not None and self.queue.empty() and self.sink(events):
            return
        for event in events:
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


STOPPING = Event(0, "server.stopping", "", {})
"""Offered to every subscription when the server stops; never published to the backlog."""


class Relay(Protocol):
    """Carries the events published on this node to the other nodes sharing its database."""

    def send(self, event: Event) -> None:
        """Queue `event` for the other nodes; must not block (called from the event loop)."""


class EventBus:
    def __init__(self, backlog: int = BACKLOG) -> None:
        # Ids follow the clock (ms) so they keep growing across restarts: a Last-Event-ID from an
        # earlier run is then older than the backlog, and the stream can tell the client to resync.
        self._last_id = 0
        self._lock = threading.Lock()
        self.backlog: deque[Event] = deque(maxlen=backlog)
        self.subscriptions: set[Subscription] = set()
        self._batches: dict[asyncio.AbstractEventLoop, list[tuple[Event, list[Subscription]]]] = {}
        """Events handed over but not yet delivered, per loop, with the subscriptions each is for."""
        self.relay: Relay | None = None
        """Set when other nodes share the database: every published event is also sent through it."""

    def publish(self, type: str, org_id: str, data: dict[str, Any], inbox_id: str | None = None,
                domain_id: str | None = None) -> Event:
        """An event that happened on this node: to this node's streams and, through the relay, the others'."""
        event = self.receive(type, org_id, data, inbox_id, domain_id)
        if self.relay is not None:
            self.relay.send(event)
        return event

    def receive(self, type: str, org_id: str, data: dict[str, Any], inbox_id: str | None = None,
                domain_id: str | None = None) -> Event:
        """An event for this node's backlog and streams only (one another node published), with an id of
        this node."""
        with self._lock:
            self._last_id = max(self._last_id + 1, int(time.time() * 1000))
            event = Event(self._last_id, type, org_id, data, inbox_id, domain_id)
            self.backlog.append(event)
            # Queued for the loops under the lock, so events from two threads reach a stream in id order.
            self._hand_over(event, [sub for sub in self.subscriptions if sub.wants(event)])
        return event

    def _hand_over(self, event: Event, targets: list[Subscription]) -> None:
        """Queue `event` for its subscriptions' loops (under the lock); the first event of a batch wakes
        each loop once."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Subscription]] = {}
        for sub in targets:
            subs = by_loop.get(sub.loop)
            if subs is None:
                subs = by_loop[sub.loop] = []
            subs.append(sub)
        for loop, subs in by_loop.items():
            if loop.is_closed():  # its streams ended with it
                self._batches.pop(loop, None)
                continue
            batch = self._batches.get(loop)
            if batch is None:
                batch = self._batches[loop] = []
                if _running_loop() is loop:
                    loop.call_soon(self._deliver, loop)
                else:
                    loop.call_soon_threadsafe(self._deliver, loop)
            batch.append((event, subs))

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give every subscription on `loop` its share of the events queued for it, in id order."""
        with self._lock:
            batch = self._batches.pop(loop, [])
        if len(batch) == 1:
            event, subs = batch[0]
            events = (event,)
            for sub in subs:
                sub.offer(events)
            return
        shares: dict[Subscription, list[Event]] = {}
        for event, subs in batch:
            for sub in subs:
                share = shares.get(sub)
                if share is None:
                    share = shares[sub] = []
                share.append(event)
        for sub, share in shares.items():
            sub.offer(share)

    def subscribe(
        self,
        org_id: str,
        inbox_id: str | None = None,
        domain_id: str | None = None,
        types: frozenset[str] | None = None,
        last_event_id: int | None = None,
        maxsize: int = 1000,
    ) -> Subscription:
        """Subscribe on the running loop; events after `last_event_id` still in the backlog are queued first."""
        sub = Subscription(org_id, asyncio.Queue(maxsize), asyncio.get_running_loop(), inbox_id, domain_id, types)
        with self._lock:
            if last_event_id is not None:
                sub.offer([event for event in self.backlog if event.id > last_event_id and sub.wants(event)])
            self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self.subscriptions.discard(sub)

    def close(self) -> None:
        """Tell every subscriber the server is stopping, so live streams end instead of holding shutdown."""
        with self._lock:
            self._hand_over(STOPPING, list(self.subscriptions))
