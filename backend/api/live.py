"""Live mail: the Server-Sent Events stream `GET /v1/events` and the long-poll `GET /v1/messages/wait`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from ..auth import has_scope
from ..events import STOPPING, Event, EventBus, Subscription
from ..http.errors import BadRequest, Forbidden, NotFound
from ..http.response import Response
from ..http.router import Route
from ..models.mail import message_json
from ..store import arrivals
from ..util import iso, parse_iso
from ._common import Context, int_arg
from .threads import mailbox_filter

# Each event type reveals one resource; a key sees only the types its scopes cover.
EVENT_SCOPES = {
    "message.received": "messages:read",
    "message.sent": "messages:read",
    "thread.updated": "threads:read",
    "delivery.status": "delivery:read",
}
MAX_WAIT = 60.0
DEFAULT_WAIT = 25.0
RETRY_MS = 3000
FAR_SEQ = 2**62


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


def _missed_backlog(bus: EventBus, last_event_id: int | None) -> bool:
    """True when the events after `last_event_id` cannot be replayed: they left the bounded backlog,
    or the id comes from an earlier run of the server."""
    if last_event_id is None:
        return False
    if not bus.backlog:
        return True
    return not bus.backlog[0].id <= last_event_id + 1 <= bus.backlog[-1].id + 1


async def _stream(bus: EventBus, sub: Subscription, heartbeat: float, resync: bool) -> AsyncIterator[bytes]:
    try:
        # The opening comment flushes the headers at once, so clients know the stream is live.
        yield f": connected\nretry: {RETRY_MS}\n\n".encode()
        if resync:
            yield b'event: resync\ndata: {"reason":"backlog"}\n\n'
        dropped = 0
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if event is STOPPING:
                return
            if sub.dropped != dropped:
                # This client fell behind and the queue overflowed: tell it to reload.
                dropped = sub.dropped
                yield b'event: resync\ndata: {"reason":"overflow"}\n\n'
            yield sse_frame(event)
    finally:
        bus.unsubscribe(sub)


async def events(ctx: Context) -> Response:
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    types = _visible_types(ctx)
    last_id = _last_event_id(ctx)
    headers = {"x-accel-buffering": "no"}
    if ctx.request.method == "HEAD":
        return Response(b"", 200, headers, content_type="text/event-stream")
    bus = ctx.services.events
    # Subscribe before answering, so nothing published while the headers go out is missed.
    sub = bus.subscribe(ctx.org_id, inbox_id, domain_id, types, last_id)
    stream = _stream(bus, sub, ctx.services.settings.sse_heartbeat, _missed_backlog(bus, last_id))
    return Response.streaming(stream, "text/event-stream", headers)


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


async def wait_for_messages(ctx: Context) -> dict:
    inbox_id, _ = mailbox_filter(ctx, required=False)
    if inbox_id is None:
        raise BadRequest("inbox_id is required")
    direction = ctx.request.arg("direction") or "inbound"
    if direction not in ("inbound", "outbound", "all"):
        raise BadRequest("direction must be inbound, outbound or all")
    directions = ("inbound", "outbound") if direction == "all" else (direction,)
    limit = int_arg(ctx.request, "limit", 50, 1, 200)
    timeout = _wait_seconds(ctx)
    position = _start_position(ctx, inbox_id)
    bus = ctx.services.events
    sub = bus.subscribe(ctx.org_id, inbox_id=inbox_id,
                        types=frozenset({"message.received", "message.sent"}), maxsize=16)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = arrivals.messages_after(ctx.services.database, ctx.org_id, inbox_id, position,
                                           directions, limit)
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0:
                break
            try:
                if await asyncio.wait_for(sub.queue.get(), remaining) is STOPPING:
                    break
            except TimeoutError:
                pass
    finally:
        bus.unsubscribe(sub)
    messages = [message_json(r) for r in rows]
    return {"data": messages, "after": messages[-1]["id"] if messages else ctx.request.arg("after")}


ROUTES = [
    Route("GET", "/v1/events", events, "threads:read", "Live events (Server-Sent Events)"),
    Route("GET", "/v1/messages/wait", wait_for_messages, "messages:read",
          "Wait for new messages in an inbox (long-poll)"),
]
