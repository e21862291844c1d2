"""Live mail: the Server-Sent Events stream `GET /v1/events` and the long-poll `GET /v1/messages/wait`."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from ..auth import has_scope
from ..delivery.outbox import OUTBOX_EVENTS
from ..events import STOPPING, Event, EventBus, Subscription
from ..http.errors import BadRequest, Forbidden, NotFound
from ..http.response import Push, Response, dumps
from ..http.router import Route
from ..models.mail import message_json
from ..store import arrivals
from ..store.extracted import Extractions
from ..util import iso, parse_iso
from ._common import Context, int_arg
from .threads import mailbox_filter

# Each event type reveals one resource; a key sees only the types its scopes cover.
EVENT_SCOPES = {
    "message.received": "messages:read",
    "message.sent": "messages:read",
    "thread.updated": "threads:read",
    "thread.deleted": "threads:read",
    "delivery.status": "delivery:read",
    **{event: "messages:read" for event in OUTBOX_EVENTS},
}
MAX_WAIT = 60.0
DEFAULT_WAIT = 25.0
RETRY_MS = 3000
FAR_SEQ = 2**62
MAX_LINK_FILTER = 500
SCAN_PAGE = 100
MAX_SCAN = 1000
"""Messages one filtered `wait` reads before answering; past it, the answer moves `after` forward."""


def _visible_types(ctx: Context) -> frozenset[str]:
    allowed = {t for t, scope in EVENT_SCOPES.items() if has_scope(ctx.scopes, scope)}
    raw = ctx.request.arg("types", "type")
    if not raw:
        return frozenset(allowed)
    asked = {t.strip() for t in raw.split(",") if t.strip()}
    unknown = asked - set(EVENT_SCOPES)
    if unknown:
        raise BadRequest(f"types: unknown event type(s) {', '.join(sorted(unknown))};"
                         f" known: {', '.join(EVENT_SCOPES)}")
    hidden = asked - allowed
    if hidden:
        needed = ", ".join(sorted({EVENT_SCOPES[t] for t in hidden}))
        raise Forbidden(f"This API key lacks the permission these events need: {needed}")
    return frozenset(asked)


def _last_event_id(ctx: Context) -> int | None:
    raw = ctx.request.headers.get("last-event-id") or ctx.request.arg("last_event_id", "lastEventId")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest("Last-Event-ID must be an event id from this stream (an integer)") from None
    if value < 0:
        raise BadRequest("Last-Event-ID must not be negative")
    return value


def sse_frame(event: Event) -> bytes:
    body = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {event.id}\nevent: {event.type}\ndata: {body}\n\n".encode()


_FRAMES: OrderedDict[int, tuple[Event, bytes]] = OrderedDict()
FRAME_CACHE = 64
PUSH_BYTES = 64 * 1024
"""At most this much is written at once for a batch of events; a burst goes through the queue a frame at
a time, so a client that cannot keep up overflows its queue and is told to resync."""


def _ready_frame(extractions: Extractions, event: Event) -> bytes | None:
    """The event as an SSE frame with its codes and links, encoded once for every stream that sends it;
    None when the message's codes and links must first be computed off the loop (`_frame`).

    Every subscription receives the same `Event` object from the bus, so the cache is keyed by that
    object (kept alive while cached, so its `id()` cannot be reused by another event).
    """
    cached = _FRAMES.get(id(event))
    if cached is not None and cached[0] is event:
        return cached[1]
    message = event.data.get("message")
    if isinstance(message, dict) and "extracted" not in message:
        extracted = extractions.now(message)
        if extracted is None:
            return None
        return _remember_frame(event, replace(event, data={**event.data,
                                                          "message": {**message, "extracted": extracted}}))
    return _remember_frame(event, event)


def _remember_frame(event: Event, shown: Event) -> bytes:
    frame = sse_frame(shown)
    _FRAMES[id(event)] = (event, frame)
    if len(_FRAMES) > FRAME_CACHE:
        _FRAMES.popitem(last=False)
    return frame


async def _frame(extractions: Extractions, event: Event) -> bytes:
    """`_ready_frame`, waiting for the codes and links when they are not ready."""
    return _ready_frame(extractions, event) or _remember_frame(event, await _with_extracted(extractions, event))


def _missed_backlog(bus: EventBus, last_event_id: int | None) -> bool:
    """True when the events after `last_event_id` cannot be replayed: they left the bounded backlog,
    or the id comes from an earlier run of the server."""
    if last_event_id is None:
        return False
    if not bus.backlog:
        return True
    return not bus.backlog[0].id <= last_event_id + 1 <= bus.backlog[-1].id + 1


async def _with_extracted(extractions: Extractions, event: Event) -> Event:
    """A message event with the message's codes and links (computed once for every stream, off ingest)."""
    message = event.data.get("message")
    if not isinstance(message, dict) or "extracted" in message:
        return event
    extracted = await extractions.of_message(message)
    return replace(event, data={**event.data, "message": {**message, "extracted": extracted}})


class EventStream:
    """One `GET /v1/events` stream.

    While its client keeps up, events are written to the connection as the bus hands them over (one
    write per batch, no task woken); otherwise, or when a frame needs work off the loop, they wait in
    the subscription's queue for `chunks`, which also sends heartbeats, `resync` after an overflow,
    and ends the stream when the server stops.
    """

    def __init__(self, bus: EventBus, sub: Subscription, heartbeat: float, resync: bool,
                 extractions: Extractions) -> None:
        self.bus, self.sub, self.heartbeat, self.resync = bus, sub, heartbeat, resync
        self.extractions = extractions
        self.push: Push | None = None
        self.parked = False
        """`chunks` is waiting on an empty queue: a pushed frame cannot overtake one it is sending."""
        sub.sink = self.take

    def bind(self, push: Push | None) -> None:
        self.push = push

    def take(self, events: Sequence[Event]) -> bool:
        """The subscription's sink: write the events' frames now if nothing else is being sent."""
        if not self.parked or self.push is None:
            return False
        frames, size = [], 0
        for event in events:
            frame = None if event is STOPPING else _ready_frame(self.extractions, event)
            if frame is None:
                return False
            frames.append(frame)
            size += len(frame)
            if size > PUSH_BYTES:
                return False
        return self.push(frames[0] if len(frames) == 1 else b"".join(frames))

    async def chunks(self) -> AsyncIterator[bytes]:
        sub = self.sub
        try:
            # The opening comment flushes the headers at once, so clients know the stream is live.
            yield f": connected\nretry: {RETRY_MS}\n\n".encode()
            if self.resync:
                yield b'event: resync\ndata: {"reason":"backlog"}\n\n'
            dropped = 0
            while True:
                try:
                    # A timer, not `wait_for`'s task per call: a thousand streams may be waiting here.
                    async with asyncio.timeout(self.heartbeat):
                        self.parked = True
                        try:
                            event = await sub.queue.get()
                        finally:
                            self.parked = False
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if event is STOPPING:
                    return
                if sub.dropped != dropped:
                    # This client fell behind and the queue overflowed: tell it to reload.
                    dropped = sub.dropped
                    yield b'event: resync\ndata: {"reason":"overflow"}\n\n'
                yield await _frame(self.extractions, event)
        finally:
            sub.sink = None
            self.bus.unsubscribe(sub)


async def events(ctx: Context) -> Response:
    inbox_id, domain_id = await ctx.run(mailbox_filter, ctx, required=False)
    types = _visible_types(ctx)
    last_id = _last_event_id(ctx)
    headers = {"x-accel-buffering": "no"}
    if ctx.request.method == "HEAD":
        return Response(b"", 200, headers, content_type="text/event-stream")
    bus = ctx.services.events
    # Subscribe before answering, so nothing published while the headers go out is missed.
    sub = bus.subscribe(ctx.org_id, inbox_id, domain_id, types, last_id)
    stream = EventStream(bus, sub, ctx.services.settings.sse_heartbeat, _missed_backlog(bus, last_id),
                         ctx.services.mail.extractions)
    return Response.streaming(stream.chunks(), "text/event-stream", headers, on_push=stream.bind)


def _wait_seconds(ctx: Context) -> float:
    raw = ctx.request.arg("timeout")
    if raw is None or raw == "":
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("timeout must be a number of seconds") from None
    if not 0 <= value <= MAX_WAIT:
        raise BadRequest(f"timeout must be between 0 and {MAX_WAIT:g} seconds")
    return value


def _start_position(ctx: Context, inbox_id: str) -> arrivals.Position:
    """`after` as a message id (exact) or an ISO time; without it, the inbox's newest message."""
    database, raw = ctx.services.database, (ctx.request.arg("after") or "").strip()
    if not raw:
        return arrivals.newest_position(database, ctx.org_id, inbox_id)
    if raw.startswith("msg_"):
        found = arrivals.message_position(database, ctx.org_id, inbox_id, raw)
        if found is None:
            raise NotFound("after: no such message in this inbox")
        return found
    try:
        return iso(parse_iso(raw)), FAR_SEQ
    except ValueError:
        raise BadRequest("after must be a message id (msg_…) or an ISO 8601 time") from None


def _bool_arg(ctx: Context, name: str) -> bool:
    raw = (ctx.request.arg(name) or "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise BadRequest(f"{name} must be true or false")


@dataclass(frozen=True)
class WaitFilter:
    """What a waiter asks of the next message: a code, and/or a link containing some text."""

    code: bool
    link_contains: str | None

    def matches(self, extracted: dict) -> bool:
        if self.code and not extracted["codes"]:
            return False
        if self.link_contains is not None:
            return any(self.link_contains in link["url"].lower() for link in extracted["links"])
        return True


def _wait_filter(ctx: Context) -> WaitFilter | None:
    code = _bool_arg(ctx, "code")
    link = ctx.request.arg("link_contains", "linkContains") or ""
    if len(link) > MAX_LINK_FILTER:
        raise BadRequest(f"link_contains must be at most {MAX_LINK_FILTER} characters")
    return WaitFilter(code, link.lower() or None) if code or link else None


async def _matching_after(
    ctx: Context, inbox_id: str, position: arrivals.Position, directions: tuple[str, ...], limit: int,
    wanted: WaitFilter,
) -> tuple[list[dict], str | None]:
    """Messages after `position` that match `wanted`, oldest first, reading at most `MAX_SCAN` messages.

    Returns the matches and, when the scan stopped at `MAX_SCAN` without filling `limit`, the id of the
    last message read, so the answer can move the caller's `after` past what was read.
    """
    mail, matches, scanned = ctx.services.mail, [], 0
    while scanned < MAX_SCAN:
        rows = await ctx.run(arrivals.messages_after, ctx.services.database, ctx.org_id, inbox_id, position,
                             directions, SCAN_PAGE)
        if not rows:
            return matches, None
        messages = [message_json(r) for r in rows]
        await mail.extractions.attach(rows, messages)
        for message in messages:
            if wanted.matches(message["extracted"]):
                matches.append(message)
                if len(matches) >= limit:
                    return matches, None
        scanned += len(rows)
        position = (rows[-1]["created_at"], rows[-1]["seq"])
    return matches, messages[-1]["id"]


async def _arrival_matches(ctx: Context, sub: Subscription, timeout: float, directions: tuple[str, ...],
                           wanted: WaitFilter) -> bool:
    """Wait until a new message that matches `wanted` arrives (True), or `timeout` passes or the server
    stops (False).

    Each arriving message is extracted once for every waiter (`Extractions.of_message`); nothing is
    read from the database until a match arrives. A queue that overflowed may have dropped a match,
    so it counts as one: the caller reads the database again.
    """
    deadline, dropped = time.monotonic() + timeout, sub.dropped
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(remaining):
                event = await sub.queue.get()
        except TimeoutError:
            return False
        if event is STOPPING:
            return False
        if sub.dropped != dropped:
            return True
        message = event.data.get("message")
        if not isinstance(message, dict) or message.get("direction") not in directions:
            continue
        if wanted.matches(await ctx.services.mail.extractions.of_message(message)):
            return True
    return False


async def wait_for_messages(ctx: Context) -> dict:
    inbox_id, _ = await ctx.run(mailbox_filter, ctx, required=False)
    if inbox_id is None:
        raise BadRequest("inbox_id is required")
    direction = ctx.request.arg("direction") or "inbound"
    if direction not in ("inbound", "outbound", "all"):
        raise BadRequest("direction must be inbound, outbound or all")
    directions = ("inbound", "outbound") if direction == "all" else (direction,)
    limit = int_arg(ctx.request, "limit", 50, 1, 200)
    timeout = _wait_seconds(ctx)
    wanted = _wait_filter(ctx)
    position = await ctx.run(_start_position, ctx, inbox_id)
    bus = ctx.services.events
    sub = bus.subscribe(ctx.org_id, inbox_id=inbox_id,
                        types=frozenset({"message.received", "message.sent"}), maxsize=16)
    try:
        if wanted is not None:
            return await _wait_for_match(ctx, sub, inbox_id, position, directions, limit, timeout, wanted)
        deadline = time.monotonic() + timeout
        woken_by: Event | None = None
        while True:
            body = await _arrivals(ctx, inbox_id, position, directions, limit, woken_by)
            remaining = deadline - time.monotonic()
            if body is not None or remaining <= 0:
                break
            woken_by = None
            try:
                async with asyncio.timeout(remaining):
                    woken_by = await sub.queue.get()
                    if woken_by is STOPPING:
                        break
            except TimeoutError:
                pass
    finally:
        bus.unsubscribe(sub)
    if body is None:
        return {"data": [], "after": ctx.request.arg("after")}
    return Response(body)


_ANSWERS: OrderedDict[tuple, tuple[Event, asyncio.Future[bytes | None]]] = OrderedDict()
ANSWER_CACHE = 64


async def _arrivals(ctx: Context, inbox_id: str, position: arrivals.Position, directions: tuple[str, ...],
                    limit: int, woken_by: Event | None) -> bytes | None:
    """The `wait` answer's body for the messages after `position`, or None when there are none yet.

    Callers woken by the same event with the same question share one read and one encoding: every read
    begins after that event's commit, so the first one's answer is as good an answer for them all.
    """
    if woken_by is None:
        return await _read_arrivals(ctx, inbox_id, position, directions, limit)
    key = (id(woken_by), ctx.org_id, inbox_id, position, directions, limit)
    shared = _ANSWERS.get(key)
    if shared is not None and shared[0] is woken_by:
        try:
            return await asyncio.shield(shared[1])
        except asyncio.CancelledError:
            if not shared[1].cancelled():
                raise
        return await _read_arrivals(ctx, inbox_id, position, directions, limit)  # the first reader failed
    answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
    _ANSWERS[key] = (woken_by, answer)
    if len(_ANSWERS) > ANSWER_CACHE:
        _ANSWERS.popitem(last=False)
    try:
        body = await _read_arrivals(ctx, inbox_id, position, directions, limit)
    except BaseException:
        answer.cancel()
        raise
    answer.set_result(body)
    return body


async def _read_arrivals(ctx: Context, inbox_id: str, position: arrivals.Position, directions: tuple[str, ...],
                         limit: int) -> bytes | None:
    rows = await ctx.run(arrivals.messages_after, ctx.services.database, ctx.org_id, inbox_id, position,
                         directions, limit)
    if not rows:
        return None
    messages = [message_json(r) for r in rows]
    await ctx.services.mail.extractions.attach(rows, messages)
    return dumps({"data": messages, "after": messages[-1]["id"]})


async def _wait_for_match(ctx: Context, sub: Subscription, inbox_id: str, position: arrivals.Position,
                          directions: tuple[str, ...], limit: int, timeout: float, wanted: WaitFilter) -> dict:
    """`wait` with `code` / `link_contains`: matching messages already there, else the next to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        matches, read_up_to = await _matching_after(ctx, inbox_id, position, directions, limit, wanted)
        remaining = deadline - time.monotonic()
        if matches or read_up_to or remaining <= 0:
            break
        if not await _arrival_matches(ctx, sub, remaining, directions, wanted):
            break
    after = matches[-1]["id"] if matches else read_up_to or ctx.request.arg("after")
    return {"data": matches, "after": after}


ROUTES = [
    Route("GET", "/v1/events", events, "threads:read", "Live events (Server-Sent Events)"),
    Route("GET", "/v1/messages/wait", wait_for_messages, "messages:read",
          "Wait for new messages in an inbox (long-poll)"),
]
