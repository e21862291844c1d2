"""SMTP ingest: many concurrent aiosmtplib clients delivering into our listener, against aiosmtpd's Sink.

Runs 5 KB messages and 200 KB-attachment messages through 32 connections into a fresh server with
durable storage, then the same load into `python -m aiosmtpd` with its do-nothing `Sink` handler (the
ceiling) in the same run; prints messages/s, p50/p99 per message and the ratio, and checks that every
message answered 250 is in the database. Last, it times the API (thread list, one client) while
10 × 20 MB messages arrive, and prints that p99.

    python3 bench/smtp_bench.py [--quick] [--messages 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, ServerProcess, free_port, percentile, print_table, wait_listening

CONNECTIONS = 32
SENDER = "load@bench.example.org"
WORDS = [
    "the", "quick", "brown", "fox", "reports", "on", "the", "quarterly", "budget", "review", "and",
    "the", "release", "schedule"
]


@dataclass
class IngestResult:
    rate: float
    p50: float
    p99: float
    accepted: list[str]
    refused: int


def make_message(number: int, run: str, recipient: str, attachment: int = 0, body_bytes: int = 5000) -> bytes:
    """One message of about `body_bytes` of text, plus an attachment of `attachment` bytes if asked."""
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = recipient
    msg["Subject"] = f"Bench {run} message {number}"
    msg["Message-ID"] = f"<{run}-{number}@bench.example.org>"
    text = " ".join(WORDS[(number + i) % len(WORDS)] for i in range(body_bytes // 6))
    msg.set_content(text[:body_bytes])
    if attachment:
        msg.add_attachment(os.urandom(attachment), maintype="application", subtype="octet-stream",
                           filename=f"data-{number}.bin")
    return msg.as_bytes()


async def deliver(port: int, recipient: str, messages: list[bytes], connections: int) -> IngestResult:
    """Send every message over `connections` concurrent SMTP sessions; latency is MAIL FROM to the 250."""
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(messages):
        queue.put_nowait(item)
    latencies: list[float] = []
    accepted: list[str] = []
    refused = 0

    async def client() -> None:
        nonlocal refused
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
        await smtp.connect()
        try:
            while not queue.empty():
                number, raw = queue.get_nowait()
                began = time.perf_counter()
                try:
                    await smtp.sendmail(SENDER, [recipient], raw)
                except aiosmtplib.SMTPException:
                    refused += 1
                    continue
                latencies.append(time.perf_counter() - began)
                accepted.append(str(number))
        finally:
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                pass

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(connections, len(messages)))))
    elapsed = time.perf_counter() - began
    return IngestResult(len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99),
                        accepted, refused)


def run_sink(messages: list[bytes], recipient: str) -> IngestResult:
    """The ceiling: aiosmtpd's own Sink handler (accepts and drops) in its own process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        return asyncio.run(deliver(port, recipient, messages, CONNECTIONS))
    finally:
        proc.terminate()
        proc.wait(10)


def stored_ids(data_dir: Path, inbox_id: str) -> set[str]:
    """The Message-IDs stored in the inbox, read straight from the database."""
    conn = sqlite3.connect(data_dir / "commune.db")
    try:
        rows = conn.execute("SELECT smtp_message_id FROM messages WHERE inbox_id = ?", (inbox_id,)).fetchall()
    finally:
        conn.close()
    return {row[0] for row in rows}


class Api:
    """A minimal keep-alive HTTP client for the benchmark's own API calls."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        self.conn.request(method, path, json.dumps(body) if body is not None else None, self.headers)
        response = self.conn.getresponse()
        data = json.loads(response.read() or b"{}")
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} answered {response.status}: {data}")
        return data


def _send_large(port: int, recipient: str, count: int, size: int, ready: Any, result: Any) -> None:
    """In a child process: build `count` messages of `size` bytes, say so, then deliver them at once."""
    messages = [make_message(n, "large", recipient, attachment=size) for n in range(count)]
    ready.set()
    result.put(len(asyncio.run(deliver(port, recipient, messages, count)).accepted))


def api_p99_during_large(server: ServerProcess, key: str, inbox: dict, count: int, size: int) -> tuple[float, int]:
    """API thread-list p99 (one client, back to back) while `count` messages of `size` bytes arrive.

    The SMTP clients run in their own process: in this one, their dot-stuffing of 20 MB would hold the
    GIL and the delays measured would be the benchmark's own.
    """
    context = multiprocessing.get_context("spawn")
    ready, result = context.Event(), context.Queue()
    sender = context.Process(target=_send_large,
                             args=(server.smtp_port, inbox["address"], count, size, ready, result))
    sender.start()
    if not ready.wait(300):
        sender.kill()
        raise RuntimeError("the large-message sender did not get ready")
    api = Api(server.port, key)
    path = f"/v1/threads?inbox_id={inbox['id']}&limit=20"
    latencies: list[float] = []
    while sender.is_alive():
        began = time.perf_counter()
        api.call("GET", path)
        latencies.append(time.perf_counter() - began)
    sender.join()
    return percentile(latencies, 0.99), result.get(timeout=10) if sender.exitcode == 0 else 0


def run(quick: bool = False, messages: int | None = None) -> list[Figure]:
    """Both runs against our server and against the Sink ceiling, then the large-message API check."""
    count = messages or (1000 if quick else 4000)
    run_id = f"r{int(time.time())}"
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="commune-smtp-bench-") as tmp:
        data_dir = Path(tmp)
        # Every bench connection comes from one address: allow them all past the per-client cap.
        per_client = {"COMMUNE_SMTP_MAX_CONNECTIONS_PER_CLIENT": str(CONNECTIONS)}
        with ServerProcess(data_dir, env=per_client).start(want_smtp=True) as server:
            admin = Api(server.port, (data_dir / "admin.key").read_text().strip())
            inbox = admin.call("POST", "/v1/inboxes", {"local_part": "bench"})["data"]
            recipient = inbox["address"]
            small = [make_message(n, f"{run_id}-5k", recipient) for n in range(count)]
            large = [make_message(n, f"{run_id}-att", recipient, attachment=200_000, body_bytes=1000)
                     for n in range(max(100, count // 8))]
            asyncio.run(deliver(server.smtp_port, recipient, small[:200], CONNECTIONS))
            ours = {"5 KB": asyncio.run(deliver(server.smtp_port, recipient, small[200:], CONNECTIONS)),
                    "200 KB attachment": asyncio.run(deliver(server.smtp_port, recipient, large, CONNECTIONS))}
            api_p99, large_accepted = api_p99_during_large(server, admin.headers["Authorization"][7:], inbox,
                                                           3 if quick else 10, 20_000_000)
            server.stop()
            have = stored_ids(data_dir, inbox["id"])
    sink = {"5 KB": run_sink(small[200:], recipient), "200 KB attachment": run_sink(large, recipient)}
    batches = {"5 KB": (f"{run_id}-5k", 200), "200 KB attachment": (f"{run_id}-att", 0)}
    for name, result in ours.items():
        tag, offset = batches[name]
        wanted = {f"<{tag}-{int(n) + offset}@bench.example.org>" for n in result.accepted}
        missing = len(wanted - have)
        ceiling = sink[name]
        ratio = result.rate / ceiling.rate if ceiling.rate else 0.0
        refused = f", {result.refused} refused" if result.refused else ""
        figures.append(Figure(f"smtp {name}: ours", f"{result.rate:,.0f} msg/s, p50 {result.p50 * 1000:.1f} ms,"
                              f" p99 {result.p99 * 1000:.1f} ms{refused}",
                              ">= 1000 msg/s" if name == "5 KB" else "",
                              result.rate >= 1000 if name == "5 KB" else None))
        figures.append(Figure(f"smtp {name}: aiosmtpd Sink ceiling",
                              f"{ceiling.rate:,.0f} msg/s, p50 {ceiling.p50 * 1000:.1f} ms,"
                              f" p99 {ceiling.p99 * 1000:.1f} ms"))
        figures.append(Figure(f"smtp {name}: ours / ceiling", f"{ratio:.2f}x", ">= 0.5x", ratio >= 0.5))
        figures.append(Figure(f"smtp {name}: answered 250 but missing from the database",
                              f"{missing} of {len(result.accepted)}", "0", missing == 0))
    large_count = 3 if quick else 10
    figures.append(Figure(f"smtp API thread-list p99 while {large_count} x 20 MB arrive "
                          f"({large_accepted} accepted)", f"{api_p99 * 1000:.1f} ms", "< 250 ms", api_p99 < 0.250))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 000 messages and 3 large ones")
    parser.add_argument("--messages", type=int, help="5 KB messages per run (default 4 000)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.messages), "SMTP ingest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
