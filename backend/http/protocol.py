"""One `asyncio.Protocol` per connection, httptools feeding it parser events.

The protocol owns keep-alive, pipelining (responses leave in request order), the limits on header and
body size, and the timeouts that stop a slow client from holding a connection. The app is an
`async handle(Request) -> Response` callable that never sees the socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import httptools

from .request import Request
from .response import Response

log = logging.getLogger("commune.http")

Handler = Callable[[Request], Awaitable[Response]]

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_PIPELINED = 32
COALESCE_BYTES = 256 * 1024
SWEEP_SECONDS = 0.25


class ConnectionLimits:
    def __init__(
        self,
        max_body: int,
        header_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        body_timeout: float = 60.0,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes


class HttpServerState:
    """What all connections of one listener share: the app, the limits, the set of live connections."""

    def __init__(self, handler: Handler, limits: ConnectionLimits, max_connections: int = 1000) -> None:
        self.handler = handler
        self.limits = limits
        self.max_connections = max_connections
        self.connections: set[HttpProtocol] = set()
        self.shutting_down = False
        self.drained = asyncio.Event()
        self.sweep_seconds = min(SWEEP_SECONDS, limits.header_timeout / 4, limits.idle_timeout / 4,
                                 limits.body_timeout / 4)
        self._sweeper: asyncio.TimerHandle | None = None

    def factory(self) -> HttpProtocol:
        return HttpProtocol(self)

    def add(self, conn: HttpProtocol) -> None:
        self.connections.add(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self.sweep_seconds, self._sweep, conn.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out connections past their deadline; one timer for all instead of one per request phase."""
        now = loop.time()
        for conn in [c for c in self.connections if c.deadline is not None and c.deadline <= now]:
            conn.deadline = None
            conn.timed_out()
        self._sweeper = loop.call_later(self.sweep_seconds, self._sweep, loop) if self.connections else None

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop taking requests, let in-flight ones finish, then close every connection."""
        self.shutting_down = True
        for conn in list(self.connections):
            conn.close_when_idle()
        if self.connections:
            self.drained.clear()
            try:
                await asyncio.wait_for(self.drained.wait(), timeout)
            except TimeoutError:
                for conn in list(self.connections):
                    conn.abort()


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: HttpServerState) -> None:
        self.state = state
        self.limits = state.limits
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.queue: deque[tuple[Request, bool]] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.closed = False
        self.closing = False
        self.reading_paused = False
        self.write_ready = asyncio.Event()
        self.write_ready.set()
        self.deadline: float | None = None
        """Loop time at which the current phase (headers, body, idle) times out; checked by the sweeper."""
        self._reset_message()

    # connection lifecycle -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None
        if self.state.shutting_down or len(self.state.connections) >= self.state.max_connections:
            self._send_error_and_close(503, "Server is busy, try again later")
            return
        self.state.add(self)
        self._arm(self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self.write_ready.set()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
        self.state.connections.discard(self)
        if not self.state.connections:
            self.state.drained.set()

    def pause_writing(self) -> None:
        self.write_ready.clear()

    def resume_writing(self) -> None:
        self.write_ready.set()

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.queue and (self.worker is None or self.worker.done()) and not self._in_message:
            self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    # timers -----------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = None

    def timed_out(self) -> None:
        if self._in_message and self._message_started_writing is False:
            self._send_error_and_close(408, "Request timed out")
        else:
            self._close()

    # parsing --------------------------------------------------------------------------------
    def _reset_message(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._header_count = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_message = False
        self._message_started_writing = False
        self._rejected = False

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._send_error_and_close(400, "Protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._rejected:
                self._send_error_and_close(400, f"Malformed HTTP request: {exc}")
        except _Rejected:
            pass

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_message = True
        self._arm(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._reject(414, "Request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > self.limits.max_header_bytes or self._header_count > MAX_HEADERS:
            self._reject(431, "Request header fields too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in self._headers:
            if key in ("content-length", "host", "authorization", "transfer-encoding"):
                self._reject(400, f"Duplicate {key} header")
            self._headers[key] += ", " + text
        else:
            self._headers[key] = text

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                self._reject(400, "Invalid Content-Length")
            if int(length) > self.limits.max_body:
                self._reject(413, "Request body too large")
        self._arm(self.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.limits.max_body:
            self._reject(413, "Request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii", "replace")
        keep_alive = self.parser.should_keep_alive() and not self.closing
        request = Request(
            method=method,
            target=self._url.decode("latin-1"),
            headers=self._headers,
            body=b"".join(self._body),
            client=self.client,
        )
        self._in_message = False
        self._disarm()
        self.queue.append((request, keep_alive))
        if len(self.queue) >= MAX_PIPELINED and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._run_queue())

    def _reject(self, status: int, message: str) -> None:
        self._rejected = True
        self._send_error_and_close(status, message)
        raise _Rejected

    # responding -------------------------------------------------------------------------------
    async def _run_queue(self) -> None:
        while self.queue and not self.closed:
            request, keep_alive = self.queue.popleft()
            if self.reading_paused and len(self.queue) < MAX_PIPELINED // 2 and self.transport:
                self.reading_paused = False
                self.transport.resume_reading()
            try:
                response = await self.state.handler(request)
            except asyncio.CancelledError:
                raise
            except Exception:  # the app has its own boundary; this is the last line of defence
                log.exception("unhandled error in HTTP handler")
                response = Response.error("Internal server error", 500)
            keep_alive = keep_alive and not self.closing
            await self._write_response(request, response, keep_alive)
            if not keep_alive:
                self._close()
                return
        if self.closing and not self._in_message:
            self._close()
        elif not self.closed and not self._in_message:
            self._arm(self.limits.idle_timeout)

    async def _write_response(self, request: Request, response: Response, keep_alive: bool) -> None:
        if self.closed or self.transport is None:
            return
        head_only = request.method == "HEAD"
        head = response.head_bytes(keep_alive, head_only)
        if response.stream is None:
            body = b"" if head_only else response.body
            if len(body) <= COALESCE_BYTES:
                # One send() for head and body: a second syscall costs as much as routing the request.
                self.transport.write(head + body)
            else:
                self.transport.write(head)
                self.transport.write(body)
            if not self.write_ready.is_set():
                await self.write_ready.wait()
            return
        self.transport.write(head)
        if head_only:
            return
        self._disarm()
        try:
            async for chunk in response.stream:
                if self.closed:
                    break
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await self.write_ready.wait()
        finally:
            aclose = getattr(response.stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")

    def _send_error_and_close(self, status: int, message: str) -> None:
        if self.transport is None or self.closed:
            return
        response = Response.error(message, status)
        self.transport.write(response.head_bytes(keep_alive=False) + response.body)
        self._close()


class _Rejected(Exception):
    """Raised inside parser callbacks to stop feeding once the request has been refused."""
