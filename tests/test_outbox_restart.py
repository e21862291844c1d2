"""Scheduled mail across a restart and a SIGKILL: the server runs as a real process, its relay pointed at
a local SMTP sink. Every scheduled message must reach the sink exactly once, never composed before its
`send_at`. How late each arrives is printed (the 1 s figure is measured in bench/outbox_bench.py, not
asserted here, where a loaded machine would make it flaky)."""

from __future__ import annotations

import email
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, relaying_server
from tests.smtp_sink import SmtpSink, wait_until

PARTNER = "partner-later.test"


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


def schedule(server: ServerProcess, inbox_id: str, count: int, send_at: float, threads: int = 4) -> list[str]:
    """`count` messages, each to its own recipient, all due at `send_at`; returns their subjects."""
    subjects = [f"later {n}" for n in range(count)]
    when = datetime.fromtimestamp(send_at, UTC).isoformat()

    def work(part: list[str]) -> None:
        with server.client() as api:
            for subject in part:
                response = api.post("/v1/messages/send", json={
                    "inbox_id": inbox_id, "to": f"{subject.replace(' ', '-')}@{PARTNER}", "subject": subject,
                    "text": "scheduled", "send_at": when})
                assert response.status_code == 202, response.text

    workers = [threading.Thread(target=work, args=(subjects[n::threads],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return subjects


def arrived(sink: SmtpSink) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(r.data, policy=policy.default) for r in list(sink.received)]


def check_exactly_once(sink: SmtpSink, subjects: list[str], send_at: float) -> None:
    """Each subject reached the sink once, composed no earlier than its `send_at` (Date has whole seconds)."""
    messages = arrived(sink)
    counts = Counter(str(m["Subject"]) for m in messages)
    assert set(counts) == set(subjects)
    assert max(counts.values()) == 1, [s for s, n in counts.items() if n > 1][:5]
    earliest = min(parsedate_to_datetime(str(m["Date"])).timestamp() for m in messages)
    assert earliest >= int(send_at)


def test_restart_with_1000_scheduled_messages_sends_each_once(server: ServerProcess, sink: SmtpSink,
                                                              engine: str) -> None:
    with server.client() as api:
        inbox = api.post("/v1/inboxes", json={"local_part": "scheduler"}).json()["data"]
    # Every send must be scheduled before `send_at`: on PostgreSQL each costs its network round trips.
    send_at = time.time() + (12 if engine == "sqlite" else 40)
    subjects = schedule(server, inbox["id"], 1000, send_at)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    server.start()
    wait_until(lambda: len(sink.received) >= 1000, timeout=120)
    time.sleep(1)  # anything sent twice would arrive now
    check_exactly_once(sink, subjects, send_at)
    with server.client() as api:
        counts = api.get("/v1/outbox/counts").json()["data"]
        assert counts["scheduled"] == 0
        sent = api.get("/v1/outbox", params={"status": "sent", "limit": 200}).json()
        assert len(sent["data"]) == 200 and sent["has_more"]


def test_sigkill_before_send_at_still_sends_each_once(server: ServerProcess, sink: SmtpSink) -> None:
    with server.client() as api:
        inbox = api.post("/v1/inboxes", json={"local_part": "killed"}).json()["data"]
    send_at = time.time() + 4
    subjects = schedule(server, inbox["id"], 20, send_at, threads=2)
    server.signal(signal.SIGKILL)
    assert server.wait(10) == -signal.SIGKILL
    server.start()
    wait_until(lambda: len(sink.received) >= 20, timeout=60)
    first = time.time()
    time.sleep(1)
    check_exactly_once(sink, subjects, send_at)
    print(f"\nafter SIGKILL: all 20 arrived {first - send_at:+.2f} s relative to send_at"
          " (restart included; a bound on lateness, polled every 50 ms)")
