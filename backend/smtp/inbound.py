"""The inbound SMTP listener: aiosmtpd on the server's own event loop, filing mail by envelope recipient.

A session's `DATA` is parsed and its bytes written to the blob store in a worker thread; the rows are
then stored by `GroupCommit` on the loop, which puts every message that became ready while the last
commit ran into the next single transaction. A session gets its `250` only after the commit that
holds its message, and a retry of a message we already have (same inbox and Message-ID) gets `250`
without a second copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from ..delivery.bounces import BounceReport, parse_dsn, parse_return_path
from ..delivery.queue import publish_status
from ..dmarc.inbox import report_inbox
from ..mail.authentication import (
    Authentication,
    Authenticator,
    NotCached,
    disposition,
    without_own_results,
)
from ..mail.parse import parse_message
from ..store.mail import Prepared
from .commit import GroupCommit
from .limits import TOO_MANY_COMMANDS, TOO_MANY_UNKNOWN, OpenSessions, SessionLimits

if TYPE_CHECKING:
    from ..server import Server
    from ..services import Services

log = logging.getLogger("commune.smtp")
# A bracketed dot-atom address, what nearly every client sends: `<local@domain>` and its parameters.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
SIMPLE_PATH = re.compile(
    rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>\s*(.*)\Z", re.DOTALL
)

NO_SUCH_USER = "550 5.1.1 Recipient address rejected: no such mailbox here"
MAILBOX_DISABLED = "550 5.2.1 Mailbox disabled, not accepting messages"
MAILBOX_PAUSED = "450 4.2.1 Mailbox temporarily unavailable, try again later"
TOO_MANY = "452 4.5.3 Too many recipients"
TRY_LATER = "451 4.3.0 Temporary failure storing the message, please retry"
UNAUTHENTICATED = "550 5.7.1 Message refused: it fails DMARC for {domain}, whose policy is reject"
AUTH_THREADS = 16
"""Threads for SPF/DKIM/DMARC: they mostly wait on DNS, so they get their own pool, apart from parsing."""
DATA_END = b"\r\n.\r\n"
DATA_BLOCK = 256 * 1024
STOP_GRACE_SECONDS = 10.0
PROGRESS_BYTES = 64 * 1024


class InboundHandler:
    """aiosmtpd hooks: RCPT only for hosted inboxes and our return paths, DATA stored before the 250."""

    def __init__(self, services: Services, commit: GroupCommit) -> None:
        self.services = services
        self.settings = services.settings
        self.commit = commit
        resolver = services.resolver
        self.authenticator = Authenticator([str(n) for n in resolver.nameservers], resolver.port,
                                           self.settings.mail_auth_dns_timeout)
        self.auth_pool = ThreadPoolExecutor(AUTH_THREADS, thread_name_prefix="commune-auth")
        self.in_data = 0
        self.idle = asyncio.Event()
        """Set while no session is between its DATA command and our reply (what stopping waits for)."""
        self.idle.set()

    def data_started(self) -> None:
        self.in_data += 1
        self.idle.clear()

    def data_ended(self) -> None:
        self.in_data -= 1
        if not self.in_data:
            self.idle.set()

    async def handle_RCPT(
        self, server: InboundSession, session: Session, envelope: InboundEnvelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            # A full envelope is not idling: the client sends the other recipients in the next transaction.
            server.progress()
            return TOO_MANY
        address = address.strip().lower()
        return_path, inbox = await self.services.database.run(self._recipient, address)
        if inbox is not None and inbox.get("status") in ("disabled", "inactive"):
            return MAILBOX_DISABLED
        if inbox is not None and inbox.get("status") == "paused":
            return MAILBOX_PAUSED
        if inbox is not None or return_path:
            if address not in envelope.rcpt_tos:
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.append(rcpt_options)
                if inbox is not None:
                    # DATA files the message by this lookup; the commit checks the inbox still exists.
                    envelope.inboxes.append(inbox)
                server.progress()
            return "250 2.1.5 OK"
        server.unknown_recipients += 1
        return NO_SUCH_USER

    def _recipient(self, address: str) -> tuple[bool, dict | None]:
        """Whether `address` is one of our return paths, else the inbox that receives it (if any)."""
        if self._is_return_path(address):
            return True, None
        inbox = self.services.domains.inbox_by_address(address)
        if inbox is None:
            inbox = report_inbox(self.services, address)  # a verified domain's DMARC `rua`, on first use
        return False, inbox

    def _is_return_path(self, address: str) -> bool:
        found = parse_return_path(address)
        return found is not None and self.services.domains.domain_by_name(found[1]) is not None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: InboundEnvelope) -> str:
        raw = envelope.original_content or b""
        bounces = [a for a in envelope.rcpt_tos if parse_return_path(a)]
        inboxes = envelope.inboxes
        loop = asyncio.get_running_loop()
        try:
            if bounces:
                reports = await loop.run_in_executor(None, parse_dsn, raw)
                await self.services.database.run(self._record_bounces, reports, bounces)
            if not inboxes:
                return "250 2.0.0 OK" if bounces else NO_SUCH_USER
            received = self._received(session, envelope)
            peer = session.peer[0] if isinstance(session.peer, tuple) else ""
            client = (str(peer), envelope.mail_from or "", str(session.host_name or ""))
            # Authentication from cached DNS answers and parsing share one worker hop; only a sender
            # whose records are not cached waits for DNS, in the authentication threads.
            prepared = await loop.run_in_executor(None, self._prepare, received, raw, client, inboxes, None)
            if prepared is None:
                auth = await loop.run_in_executor(self.auth_pool, self.authenticator.check, raw, *client)
                prepared = await loop.run_in_executor(None, self._prepare, received, raw, client, inboxes, auth)
            if isinstance(prepared, str):
                return prepared
            stored = await self.commit.submit(prepared, hosted_only=True)
        except Exception:
            log.exception("storing a message from %s failed", envelope.mail_from)
            return TRY_LATER
        if not stored:
            # Every recipient inbox was deleted since RCPT: never a 250 for mail we drop.
            return NO_SUCH_USER
        return f"250 2.0.0 OK {stored[0].message['message_id']}"

    def _received(self, session: Session, envelope: Envelope) -> bytes:
        """The trace header a receiving server adds (RFC 5321 §4.4)."""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        helo = str(session.host_name or "unknown").replace("\r", "").replace("\n", "")[:255]
        protocol = ("UTF8SMTP" if envelope.smtp_utf8 else "ESMTP") + ("S" if session.ssl else "")
        recipient = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
        stamp = format_datetime(datetime.now(UTC))
        line = (f"Received: from {helo} ([{peer}])\r\n\tby {self.settings.hostname} (Commune) with {protocol}"
                f"{recipient}; {stamp}\r\n")
        return line.encode("utf-8", "replace")

    def _prepare(self, received: bytes, raw: bytes, client: tuple[str, str, str], inboxes: list[dict],
                 auth: Authentication | None) -> list[Prepared] | str | None:
        """Authenticate, parse once and write the blobs (in a worker thread): one prepared copy per inbox.

        Without `auth`, the checks use cached DNS answers only, and None means one was missing. A
        string is the refusal when every recipient inbox refuses the message. In a transaction whose
        recipients disagree, an inbox that would refuse it gets it quarantined instead: after DATA,
        SMTP has one answer for every recipient.
        """
        if auth is None:
            try:
                auth = self.authenticator.check(raw, *client, cached_only=True)
            except NotCached:
                return None
        actions = {inbox["id"]: disposition(auth, inbox.get("reject_unauthenticated")) for inbox in inboxes}
        if all(action == "reject" for action in actions.values()):
            return UNAUTHENTICATED.format(domain=auth.from_domain)
        hostname = self.settings.hostname
        # Our trace line first, then our results (where Gmail and Postfix milters put them), then the
        # message without any results header forged in our name (RFC 8601 §5).
        traced = received + auth.header(hostname) + without_own_results(raw, hostname)
        message = parse_message(traced, client[1], hostname)
        prepared = [self.services.mail.prepare(inbox, message, "inbound", fsync=False) for inbox in inboxes]
        for item in prepared:
            item.authentication = auth.as_json()
            if actions[item.inbox["id"]] != "deliver":
                item.labels = ["quarantine"]
        return prepared

    def _record_bounces(self, reports: list[BounceReport] | None, return_paths: list[str]) -> None:
        """A failure report to a return path bounces the queue row that path names (one row per path)."""
        if not reports:
            log.info("mail to our return path that is not a failure report was dropped")
            return
        for address in return_paths:
            queue_id, _ = parse_return_path(address)  # type: ignore[misc]
            recorded = self.services.delivery.record_bounce_report(queue_id, reports[0].detail)
            if recorded is not None:
                publish_status(self.services.events, *recorded)


class InboundEnvelope(Envelope):
    """aiosmtpd's envelope plus the inboxes its recipients named, as RCPT found them."""

    def __init__(self) -> None:
        super().__init__()
        self.inboxes: list[dict] = []


Command = Callable[["InboundSession", str], Awaitable[None]]


def _counted(command: Command) -> Command:
    """`command`, refused with `421` once the session has sent too many commands without progress."""
    async def counted(self: InboundSession, arg: str) -> None:
        if self.without_progress >= self.limits.commands_without_progress:
            await self.push(TOO_MANY_COMMANDS)
            self._hang_up()
            return
        self.progressed = False
        await command(self, arg)
        if not self.progressed:
            self.without_progress += 1

    # HELP reads the syntax aiosmtpd's `@syntax` put on the command.
    return functools.update_wrapper(counted, command)


def counts_commands(cls: type[InboundSession]) -> type[InboundSession]:
    """Count every `smtp_*` command of the class, wrapped once here rather than on each connection."""
    for name in dir(cls):
        if name.startswith("smtp_"):
            setattr(cls, name, _counted(getattr(cls, name)))
    return cls


@counts_commands
class InboundSession(SMTP):
    """One SMTP connection, admitted under the listener's caps and registered while open so stopping can close it.

    DATA is read in blocks instead of aiosmtpd's line-by-line loop: a 20 MB message is ~270,000 lines,
    and reading them one by one on the event loop stalls every API request behind it.

    Every command the session sends is counted unless it delivers a message or adds a recipient
    (`limits.py` says why). aiosmtpd's own `command_call_limit` is no help here: its budget per command
    lasts the whole session, so a client delivering many messages over one connection would run out.
    """

    def __init__(self, open_sessions: OpenSessions, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.open_sessions = open_sessions
        self.limits = open_sessions.limits
        self.client = ""
        self.admitted = False
        self.without_progress = 0
        self.progressed = False
        self.unknown_recipients = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the TLS layer STARTTLS puts on an admitted connection
            peer = transport.get_extra_info("peername")
            self.client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            refusal = self.open_sessions.admit(self, self.client)
            if refusal is not None:
                # Over a cap: say why (RFC 5321 §3.8) and hang up before any session state exists.
                transport.write(refusal.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self.admitted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.open_sessions.release(self, self.client)
        super().connection_lost(error)

    def _create_envelope(self) -> InboundEnvelope:
        return InboundEnvelope()

    def progress(self) -> None:
        """The command being handled moves the session towards a delivered message: it is not counted."""
        self.progressed = True

    def _hang_up(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """`<local@domain>` the quick way; anything else goes to aiosmtpd's full RFC 5322 parser.

        aiosmtpd parses every MAIL FROM and RCPT TO with the `email` header parser (and defines a
        `typing.Protocol` class on each call): 0.2 ms of the event loop's 1 ms per delivered message.
        """
        found = SIMPLE_PATH.match(arg)
        if found is None or (self.local_part_limit and found.group(1).index("@") > self.local_part_limit):
            return super()._getaddr(arg)
        return found.group(1), found.group(2)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if self.unknown_recipients >= self.limits.max_unknown:
            await self.push(TOO_MANY_UNKNOWN)
            self._hang_up()
            return
        if self.unknown_recipients >= self.limits.delay_after_unknown:
            # Guessing addresses gets slow; the wait holds only this session, never the loop.
            await asyncio.sleep(self.limits.unknown_delay)
        await super().smtp_RCPT(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        handler: InboundHandler = self.event_handler
        handler.data_started()
        # aiosmtpd sizes the reader's buffer for one command line (its `limit`), so a message of more
        # than two lines paused and resumed the socket (two epoll changes); DATA reads in blocks.
        self._reader._limit = DATA_BLOCK // 2  # type: ignore[attr-defined]
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            content = await read_data(self._reader, self.data_size_limit, self._reset_timeout)
            if content is None:
                self._set_post_data_state()
                await self.push("552 Error: Too much mail data")
                return
            self.envelope.content = self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            if status.startswith("250"):
                self.without_progress = 0
                self.progress()
            await self.push(status)
        finally:
            self._reader._limit = self.line_length_limit  # type: ignore[attr-defined]
            handler.data_ended()


async def read_data(
    reader: asyncio.StreamReader, limit: int | None, progress: Callable[[], None] | None = None
) -> bytes | None:
    """The message up to the lone dot, dot-unstuffed; None when it is larger than `limit` (read to the end anyway).

    `progress` is called each time another `PROGRESS_BYTES` have arrived: the session's idle timer is
    restarted only by real progress, so a large message on a slow link gets through while a client
    trickling a byte at a time is still cut off. We do not offer PIPELINING, so a client sends nothing
    after the dot before our reply; anything it does send there is dropped.
    """
    received = 0
    # A line break in front makes the first line follow the same end and dot-stuffing rules as the rest.
    data = bytearray(b"\r\n")
    discarded = 0
    while True:
        block = await reader.read(DATA_BLOCK)
        if not block:
            raise ConnectionResetError("connection closed during DATA")
        received += len(block)
        if progress is not None and received >= PROGRESS_BYTES:
            received = 0
            progress()
        scan_from = max(len(data) - len(DATA_END) + 1, 0)
        data += block
        end = data.find(DATA_END, scan_from)
        if end >= 0:
            break
        if limit is not None and discarded + len(data) > limit + 2:
            # Too big: keep only the tail that may hold the start of the end marker.
            discarded += len(data) - len(DATA_END)
            del data[:-len(DATA_END)]
    if discarded or (limit is not None and end > limit):
        return None
    del data[end + 2:]
    if data.find(b"\r\n.") != -1:  # stuffed lines are rare; skip a second pass over big messages without them
        return bytes(data).replace(b"\r\n.", b"\r\n")[2:]
    del data[:2]
    return bytes(data)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start(server: Server) -> None:
    """Listen for SMTP on the API's loop; stopping closes the port, lets sessions in DATA finish, then commits."""
    settings = server.settings
    if not settings.smtp_enabled:
        return
    services = server.services
    # aiosmtpd logs every connection and command at INFO: under load that halves ingest throughput.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = InboundHandler(services, services.commit)
    context = tls_context(settings.smtp_tls_cert, settings.smtp_tls_key) if settings.smtp_tls_cert else None
    open_sessions = OpenSessions(SessionLimits.from_settings(settings))

    def factory() -> SMTP:
        return InboundSession(
            open_sessions, handler, data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True, decode_data=False, hostname=settings.hostname, ident="Commune ESMTP",
            tls_context=context, timeout=settings.idle_timeout,
        )

    listener = server.listeners.smtp
    assert listener is not None  # bound whenever SMTP is enabled
    await listener.serve(factory)
    server.smtp_port = listener.port
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    log.info("SMTP listening on %s:%s", host, server.smtp_port)

    async def stop() -> None:
        listener.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(handler.idle.wait(), STOP_GRACE_SECONDS)
        await services.commit.drain()
        handler.auth_pool.shutdown(wait=False, cancel_futures=True)
        for session in list(open_sessions.sessions):
            if session.transport is not None:
                session.transport.close()
        await listener.wait_closed()

    server.on_stop(stop)
