"""One `asyncio.Protocol` per connection, httptools feeding it parser events.

The protocol owns keep-alive, pipelining (responses leave in request order, refusals included), the
limits on header and body size, the per-address connection cap, and the timeouts that stop a slow
client from holding a connection, whether it is slow to send or slow to read. The app is an
`async handle(Request) -> Response` callable that never sees the socket, plus an `admit(Request)` it
is asked as soon as the head is complete: the request's body limit, or the response that refuses it
before a byte of the body is read. When the app needs the database to decide (a key it has not seen
lately), it answers `Deferred`: reading pauses until the decision, so a refused body is still never read.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httptools

from .request import Request
from .response import Response

log = logging.getLogger("commune.http")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True)
class Deferred:
    """An admission decided later: the body limit now, the refusal (or None to proceed) when `decision` ends."""

    body_limit: int
    decision: Awaitable[Response | None]


Admit = Callable[[Request], "Response | int | Deferred"]
"""Asked when a head is complete: the request's body limit in bytes, or the response that refuses it."""

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_PIPELINED = 32
COALESCE_BYTES = 256 * 1024
SWEEP_SECONDS = 0.25
SPOOL_BYTES = 1024 * 1024
"""A body past this size goes to a temporary file instead of memory."""
LINGER_SECONDS = 2.0
"""After a final answer, how long the unread rest of a request may still arrive and be dropped."""


class ConnectionLimits:
    def __init__(
        self,
        max_body: int,
        header_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        body_timeout: float = 60.0,
        max_header_bytes: int = MAX_HEADER_BYTES,
        send_timeout: float | None = None,
    ) -> None:
        self.max_body = max_body
        self.send_timeout = body_timeout if send_timeout is None else send_timeout
        """How long a response may wait for the client to read before the connection is dropped."""
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes


class HttpServerState:
    """What all connections of one listener share: the app, the limits, the set of live connections."""

    def __init__(self, handler: Handler, limits: ConnectionLimits, max_connections: int = 1000,
                 max_per_client: int = 64, admit: Admit | None = None, spool_dir: Path | None = None) -> None:
        self.handler = handler
        self.limits = limits
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.admit: Admit = admit or (lambda request: limits.max_body)
        self.spool_dir = spool_dir
        self.connections: set[HttpProtocol] = set()
        self.per_client: dict[str, int] = {}
        self.shutting_down = False
        self.drained = asyncio.Event()
        self.sweep_seconds = min(SWEEP_SECONDS, limits.header_timeout / 4, limits.idle_timeout / 4,
                                 limits.body_timeout / 4)
        self._sweeper: asyncio.TimerHandle | None = None

    def factory(self) -> HttpProtocol:
        return HttpProtocol(self)

    def refusal(self, address: str | None) -> str | None:
        """Why a new connection from `address` is refused, or None when it may be served."""
        if self.shutting_down or len(self.connections) >= self.max_connections:
            return "Server is busy, try again later"
        if address is not None and self.per_client.get(address, 0) >= self.max_per_client:
            return "Too many connections from your address, try again later"
        return None

    def add(self, conn: HttpProtocol, address: str | None) -> None:
        self.connections.add(conn)
        if address is not None:
            self.per_client[address] = self.per_client.get(address, 0) + 1
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self.sweep_seconds, self._sweep, conn.loop)

    def remove(self, conn: HttpProtocol, address: str | None) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if address is not None:
            left = self.per_client.pop(address, 1) - 1
            if left:
                self.per_client[address] = left
        if not self.connections:
            self.drained.set()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out connections past a deadline; one timer for all instead of one per request phase."""
        now = loop.time()
        for conn in list(self.connections):
            try:
                if conn.send_deadline is not None and conn.send_deadline <= now:
                    conn.send_deadline = None
                    conn.abort()
                elif conn.deadline is not None and conn.deadline <= now:
                    conn.deadline = None
                    conn.timed_out()
            except Exception:  # one broken connection must not stop the sweeps for all the others
                log.exception("error timing out an HTTP connection")
                conn.abort()
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


@dataclass(slots=True)
class Pending:
    """One answer owed, in order: a request for the app, or an answer decided already from the head."""

    request: Request | None
    """None for the answer that ends the connection (a malformed or refused request, a timeout)."""
    keep_alive: bool
    answer: Response | None = None
    admission: asyncio.Task[Response | None] | None = None
    """A deferred admission still to be awaited before the request is handled."""


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: HttpServerState) -> None:
        self.state = state
        self.limits = state.limits
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.queue: deque[Pending] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.closed = False
        self.closing = False
        self.refused = False
        """A final answer is queued or sent: nothing more is parsed, whatever arrives is dropped."""
        self.reading_paused = False
        self.admissions = 0
        """Deferred admissions under way; reading stays paused while there are any."""
        self.write_ready = asyncio.Event()
        self.write_ready.set()
        self.deadline: float | None = None
        """Loop time at which the current read phase (headers, body, idle) times out; checked by the sweeper."""
        self.send_deadline: float | None = None
        """Loop time by which the client must have read what we are waiting to write."""
        self.streaming = False
        """A streaming response that takes pushed chunks (`Response.on_push`) is being written."""
        self._linger: asyncio.TimerHandle | None = None
        self._reset_message()

    # connection lifecycle -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None
        why = self.state.refusal(self.address)
        if why is not None:
            self._refuse(Response.error(why, 503, {"retry-after": "1"}))
            return
        self.state.add(self, self.address)
        self._arm(self.limits.idle_timeout)

    @property
    def address(self) -> str | None:
        return self.client[0] if self.client is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self.send_deadline = None
        if self._linger is not None:
            self._linger.cancel()
        self.write_ready.set()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
        self._drop_body()
        self.state.remove(self, self.address)

    def pause_writing(self) -> None:
        self.write_ready.clear()

    def resume_writing(self) -> None:
        self.write_ready.set()

    def close_when_idle(self) -> None:
        self.closing = True
        answered = not self.queue and (self.worker is None or self.worker.done())
        if answered and (self.refused or not self._in_message):
            self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    # timers -----------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = None

    def timed_out(self) -> None:
        if self._in_message and not self.refused:
            self._refuse(Response.error("Request timed out", 408))
        else:
            self._close()

    # parsing --------------------------------------------------------------------------------
    def _reset_message(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._header_count = 0
        self._request: Request | None = None
        self._answer: Response | None = None
        self._admission: asyncio.Task[Response | None] | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_limit = self.limits.max_body
        self._spool: IO[bytes] | None = None
        self._in_message = False

    def data_received(self, data: bytes) -> None:
        if self.closed or self.refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(Response.error("Protocol upgrades are not supported", 400))
        except httptools.HttpParserError as exc:
            if not self.refused:
                self._refuse(Response.error(f"Malformed HTTP request: {exc}", 400))
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
        declared = None
        if length is not None:
            if not length.isdigit():
                self._reject(400, "Invalid Content-Length")
            declared = int(length)
            if declared > self.limits.max_body:
                self._reject(413, "Request body too large")
        coding = self._headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            # The parser finds out only after this callback; framing is checked before the app is asked.
            self._reject(400, "Unsupported Transfer-Encoding: only chunked is accepted")
        if "upgrade" in self._headers and "upgrade" in self._headers.get("connection", "").lower():
            self._reject(400, "Protocol upgrades are not supported")
        request = Request(
            method=self.parser.get_method().decode("ascii", "replace"),
            target=self._url.decode("latin-1"),
            headers=self._headers,
            client=self.client,
        )
        try:
            verdict = self.state.admit(request)
        except Exception:  # the app has its own boundary; this is the last line of defence
            log.exception("unhandled error admitting an HTTP request")
            verdict = Response.error("Internal server error", 500)
        self._request = request
        if isinstance(verdict, Deferred):
            # A refusal outranks a body over the limit, as when admission is decided at once.
            self._body_limit = min(self._body_limit, verdict.body_limit)
            self._defer(request, verdict.decision, declared is not None and declared > self._body_limit)
            self._arm(self.limits.body_timeout)
            return
        if isinstance(verdict, Response):
            if declared or "transfer-encoding" in self._headers:
                # The body is never read: the answer goes out next and the connection ends after it.
                self._refuse(verdict)
                raise _Rejected
            self._answer = verdict
            return
        self._body_limit = min(self._body_limit, verdict)
        if declared is not None and declared > self._body_limit:
            self._reject(413, "Request body too large")
        self._arm(self.limits.body_timeout)

    def _defer(self, request: Request, decision: Awaitable[Response | None], oversize: bool) -> None:
        """Await the admission in a task; no more is read meanwhile, so a refused body mostly stays unread."""
        self._admission = task = self.loop.create_task(_decided(decision))
        self.admissions += 1
        self._pause_reading()
        task.add_done_callback(lambda done: self._admitted(request, done, oversize))

    def _admitted(self, request: Request, task: asyncio.Task[Response | None], oversize: bool) -> None:
        self.admissions -= 1
        if self.closed or self.refused or task.cancelled():
            return
        refusal = task.result()
        if refusal is None and oversize:
            refusal = Response.error("Request body too large", 413)
        if refusal is not None and self._request is request:
            self._refuse(refusal)  # its body is still on the way: it is never read
        elif not self.admissions and len(self.queue) < MAX_PIPELINED:
            self._resume_reading()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._body_limit:
            self._reject(413, "Request body too large")
        if self._spool is None:
            self._body.append(body)
            if self._body_size <= SPOOL_BYTES:
                return
        try:
            # Page-cache writes of a socket read's worth cost microseconds: cheaper than a thread hop.
            if self._spool is None:
                self._spool = tempfile.TemporaryFile(dir=self.state.spool_dir)  # noqa: SIM115 (lives across callbacks)
                self._spool.writelines(self._body)
                self._body = []
            else:
                self._spool.write(body)
        except OSError:
            log.exception("could not spool a request body to disk")
            self._reject(507, "The server has no room for this request body right now, try again later")

    def on_message_complete(self) -> None:
        request = self._request
        assert request is not None
        if self._spool is not None:
            request.body_file, self._spool = self._spool, None
        else:
            request.body = b"".join(self._body)
        keep_alive = self.parser.should_keep_alive() and not self.closing
        self._in_message = False
        self._request = None
        self._disarm()
        self.queue.append(Pending(request, keep_alive, self._answer, self._admission))
        if len(self.queue) >= MAX_PIPELINED:
            self._pause_reading()
        self._start_worker()

    def _drop_body(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._body = []

    def _reject(self, status: int, message: str) -> None:
        self._refuse(Response.error(message, status))
        raise _Rejected

    def _refuse(self, response: Response) -> None:
        """End the connection with `response`, after the answers to the requests before it."""
        self.refused = True
        self._in_message = False
        self._disarm()
        self._drop_body()
        self._pause_reading()
        self.queue.append(Pending(None, False, response))
        self._start_worker()

    # responding -------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._run_queue())

    async def _run_queue(self) -> None:
        try:
            while self.queue and not self.closed:
                item = self.queue.popleft()
                request, response = item.request, item.answer
                if (self.reading_paused and len(self.queue) < MAX_PIPELINED // 2 and not self.refused
                        and not self.admissions):
                    self._resume_reading()
                if response is None and item.admission is not None:
                    response = await item.admission
                if response is None:
                    assert request is not None
                    try:
                        response = await self.state.handler(request)
                    except Exception:  # the app has its own boundary; this is the last line of defence
                        log.exception("unhandled error in HTTP handler")
                        response = Response.error("Internal server error", 500)
                    if request.body_file is not None:
                        request.body_file.close()
                head_only = request is not None and request.method == "HEAD"
                if not await self._write_response(response, item.keep_alive and not self.closing, head_only):
                    if self.refused:
                        self._linger_and_close()
                    else:
                        self._close()
                    return
        except Exception:  # a connection nobody answers any more must not stay open
            log.exception("error writing an HTTP response")
            self.abort()
            return
        if self.closing and not self._in_message:
            self._close()
        elif not self.closed and not self._in_message and not self.refused:
            self._arm(self.limits.idle_timeout)

    def _linger_and_close(self) -> None:
        """After the last answer, half-close and drop what still arrives for a moment, then close.

        Closing while the client is still sending (the body we refused to read) would make its TCP stack
        answer with a reset that can destroy our answer before the client reads it; a short linger with
        our side shut lets it read the answer and close first.
        """
        if self.closed or self.transport is None:
            return
        if not self.transport.can_write_eof():
            self._close()
            return
        self.transport.write_eof()
        self._resume_reading()
        self._linger = self.loop.call_later(LINGER_SECONDS, self._close)

    async def _write_response(self, response: Response, keep_alive: bool, head_only: bool = False) -> bool:
        """Write one response; whether the connection may carry another (False once anything went wrong)."""
        if self.closed or self.transport is None:
            return False
        try:
            head = response.head_bytes(keep_alive, head_only)
        except Exception:
            log.exception("could not render a response head")
            await _close_stream(response)
            response, keep_alive = Response.error("Internal server error", 500), False
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
                await self._drained()
            return keep_alive
        streaming = False
        try:
            self.transport.write(head)
            if head_only:
                return keep_alive
            if response.on_push is not None:
                streaming = self.streaming = True
                response.on_push(self._push)
            async for chunk in response.stream:
                if self.closed:
                    return False
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if not self.write_ready.is_set():
                        await self._drained()
        finally:
            if streaming:
                self.streaming = False
                response.on_push(None)  # type: ignore[misc]
            await _close_stream(response)
        if self.closed:
            return False
        self.transport.write(b"0\r\n\r\n")
        return keep_alive

    def _push(self, chunk: bytes) -> bool:
        """The streaming response's `Push`: one chunk now, when the client keeps up with what it was sent."""
        if not self.streaming or self.closed or not self.write_ready.is_set():
            return False
        self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # type: ignore[union-attr]
        return True

    async def _drained(self) -> None:
        """Wait until the client has read enough of what we wrote, for at most the send timeout."""
        self.send_deadline = self.loop.time() + self.limits.send_timeout
        await self.write_ready.wait()
        self.send_deadline = None


async def _close_stream(response: Response) -> None:
    aclose = getattr(response.stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _decided(decision: Awaitable[Response | None]) -> Response | None:
    try:
        return await decision
    except Exception:  # the app has its own boundary; this is the last line of defence
        log.exception("unhandled error admitting an HTTP request")
        return Response.error("Internal server error", 500)


class _Rejected(Exception):
    """Raised inside parser callbacks to stop feeding once the request has been refused."""
