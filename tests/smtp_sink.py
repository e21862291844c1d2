"""A local SMTP server standing in for the remote side: records what it receives, answers as told."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class SinkHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: list[str] = []
        """Replies for the next DATA commands, used up in order; `250` once empty."""
        self.rcpt_reply: str | None = None
        self.greetings = 0
        """EHLOs seen: one per connection a client opened."""
        self.delay = 0.0
        """Seconds between a message's last byte and its recording and reply: a sender that dies meanwhile
        has delivered the message without hearing so (what makes SMTP at-least-once)."""
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.greetings += 1
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            reply = self.replies.pop(0) if self.replies else "250 2.0.0 Accepted by sink"
            if reply.startswith("250"):
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                              envelope.original_content or b""))
        return reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink:
    def __init__(self) -> None:
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def answer(self, *replies: str) -> None:
        """Queue DATA replies (e.g. `451 4.3.0 try later`), one per incoming message."""
        self.handler.replies.extend(replies)

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        return wait_until(lambda: self.received if len(self.received) >= count else None, timeout)


def wait_until(probe: Callable[[], object], timeout: float = 10, interval: float = 0.05):
    """Poll `probe` until it returns something truthy; fail the test when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)
