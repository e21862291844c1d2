"""SIGKILL in the middle of a burst of SMTP deliveries and API sends loses nothing that was acknowledged.

The server runs as a real process. Threads deliver over SMTP and send through the API until it is
killed; it restarts on the same data directory. Every message that got a `250` or a `200` must be
stored exactly once, the database must pass `PRAGMA integrity_check`, and the outbound queue must pick
up where it stopped, so every acknowledged send reaches the remote side.
"""

from __future__ import annotations

import signal
import smtplib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess, relaying_server
from tests.smtp_sink import SmtpSink, wait_until

PARTNER = "partner-crash.test"
SMTP_THREADS = 4
API_THREADS = 3


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path, dns_server, sink: SmtpSink, engine) -> Iterator[ServerProcess]:
    proc = relaying_server(tmp_path, dns_server, sink.port, PARTNER, engine=engine)
    yield proc.start()
    proc.stop()


class Burst:
    """Deliveries and sends from threads; only what the server acknowledged is recorded."""

    def __init__(self, server: ServerProcess, inbox: dict, sender: dict) -> None:
        self.server, self.inbox, self.sender = server, inbox, sender
        self.delivered: list[str] = []
        self.sent: list[dict] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._deliver, args=(n,)) for n in range(SMTP_THREADS)]
        self.threads += [threading.Thread(target=self._send, args=(n,)) for n in range(API_THREADS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)

    def _deliver(self, worker: int) -> None:
        try:
            smtp = smtplib.SMTP("127.0.0.1", self.server.smtp_port, timeout=10)
            for n in range(10_000):
                message_id = f"<crash-{worker}-{n}@example.net>"
                smtp.sendmail("peer@example.net", [self.inbox["address"]],
                              f"From: peer@example.net\r\nTo: {self.inbox['address']}\r\n"
                              f"Subject: burst {worker}-{n}\r\nMessage-ID: {message_id}\r\n\r\nhello\r\n")
                with self.lock:
                    self.delivered.append(message_id)
        except (OSError, smtplib.SMTPException):
            return  # the server is gone; whatever was not acknowledged may or may not be stored

    def _send(self, worker: int) -> None:
        try:
            with self.server.client(timeout=10) as api:
                for n in range(10_000):
                    response = api.post("/v1/messages/send", json={
                        "inboxId": self.sender["id"], "to": [f"peer{worker}@{PARTNER}"],
                        "subject": f"send {worker}-{n}", "text": "queued before the crash"})
                    if response.status_code != 200:
                        return
                    with self.lock:
                        self.sent.append(response.json()["data"])
        except httpx.HTTPError:
            return

    def progress(self) -> bool:
        with self.lock:
            return len(self.delivered) >= 30 and len(self.sent) >= 10


def _all_messages(api: httpx.Client, inbox_id: str) -> list[dict]:
    found, cursor = [], None
    while True:
        page = api.get("/v1/messages", params={"inbox_id": inbox_id, "limit": 1000,
                                               **({"cursor": cursor} if cursor else {})}).json()
        found += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found


def test_sigkill_mid_burst_loses_nothing_acknowledged(server: ServerProcess, sink: SmtpSink, engine: str) -> None:
    with server.client() as api:
        inbox = api.post("/v1/inboxes", json={"local_part": "burst"}).json()["data"]
        sender = api.post("/v1/inboxes", json={"local_part": "outgoing"}).json()["data"]
    burst = Burst(server, inbox, sender)
    burst.start()
    wait_until(burst.progress, timeout=60)
    server.signal(signal.SIGKILL)
    burst.join()
    assert server.wait(10) == -signal.SIGKILL

    if engine == "sqlite":  # PostgreSQL checks its own files; a kill of its client leaves them alone
        with sqlite3.connect(server.data_dir / "commune.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    server.start()
    with server.client() as api:
        stored = [m["metadata"].get("message_id") for m in _all_messages(api, inbox["id"])]
        for message_id in burst.delivered:
            assert stored.count(message_id) == 1, message_id
        outgoing = [m["id"] for m in _all_messages(api, sender["id"])]
        for sent in burst.sent:
            assert outgoing.count(sent["id"]) == 1, sent

    # The queue resumes: every acknowledged send reaches the remote side (at least once).
    expected = {sent["smtp_message_id"] for sent in burst.sent}

    def arrived() -> bool:
        seen = {line.split(b":", 1)[1].strip().decode() for r in list(sink.received)
                for line in r.data.split(b"\r\n") if line.lower().startswith(b"message-id:")}
        return expected <= seen

    wait_until(arrived, timeout=60)
