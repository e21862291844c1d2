"""Live fan-out: 1 000 `GET /v1/events` subscribers and 1 000 `GET /v1/messages/wait` callers on one
server, while messages arrive over SMTP one at a time.

Every subscriber and caller is its own keep-alive connection (raw sockets, spread over loopback source
addresses 127.0.0.2… because the server caps connections per client address). For each message the
clock starts when the SMTP client begins `sendmail` and stops when a subscriber has read the
`message.received` frame, or a waiting caller has its answer; the figure is the p99 over every
subscriber and caller and every message. A subscriber whose stream ends, or a caller without the
message, counts as dropped. Server RSS is read from `/proc` with everyone connected.

    python3 bench/fanout_bench.py [--quick] [--subscribers 1000] [--waiters 1000] [--messages 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, ServerProcess, percentile, print_table
from bench.smtp_bench import Api, make_message

PER_ADDRESS = 60
"""Connections per loopback source address, under the server's 64 per client address."""


def source(number: int) -> tuple[str, int]:
    return f"127.0.{2 + number // PER_ADDRESS // 250}.{2 + number // PER_ADDRESS % 250}", 0


async def _request(port: int, number: int, path: str, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=source(number), limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    return reader, writer


async def _head(reader: asyncio.StreamReader) -> dict[str, str]:
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"answered {status!r}")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


class Subscriber:
    """One `GET /v1/events` stream; notes when each message's subject arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.writer: asyncio.StreamWriter | None = None
        self.ended = False
        self.connected = asyncio.Event()

    async def run(self, port: int, number: int, key: str, inbox_id: str) -> None:
        try:
            reader, self.writer = await _request(port, number, f"/v1/events?inbox_id={inbox_id}", key)
            await _head(reader)
            # Chunked transfer: chunk-size lines and frames; only `data:` lines matter here.
            while line := await reader.readline():
                if line.startswith(b": connected"):
                    self.connected.set()
                elif line.startswith(b"data: ") and b'"message"' in line:
                    subject = json.loads(line[6:])["message"]["subject"]
                    self.arrived.setdefault(subject, time.perf_counter())
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            pass
        self.ended = True
        self.connected.set()


async def wait_once(port: int, number: int, key: str, inbox_id: str, after: str
                    ) -> tuple[float, list[str], str]:
    """One `GET /v1/messages/wait` answered: when it arrived, the subjects in it and its `after`."""
    reader, writer = await _request(port, number, f"/v1/messages/wait?inbox_id={inbox_id}&after={after}"
                                                  f"&timeout=60", key)
    try:
        headers = await _head(reader)
        body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
        return time.perf_counter(), [m["subject"] for m in body["data"]], body["after"] or after
    finally:
        writer.close()


async def fan_out(server: ServerProcess, key: str, inbox: dict, subscribers: int, waiters: int,
                  messages: int) -> tuple[list[float], list[float], int, int, float, float, float]:
    """Latencies of every stream delivery and of every wait answer, dropped subscribers, dropped waits and
    the RSS with all connected; server and bench CPU per message from a sent message to its last delivery."""
    subs = [Subscriber() for _ in range(subscribers)]
    tasks = [asyncio.create_task(s.run(server.port, n, key, inbox["id"])) for n, s in enumerate(subs)]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subs)), 120)
    latencies: list[float] = []
    streamed: list[float] = []
    dropped_waits = 0
    server_cpu = client_cpu = 0.0
    rss = 0.0
    after = ""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.smtp_port, timeout=60)
    await smtp.connect()
    try:
        for number in range(messages):
            raw = make_message(number, "fanout", inbox["address"], body_bytes=500)
            subject = f"Bench fanout message {number}"
            calls = [asyncio.create_task(wait_once(server.port, subscribers + n, key, inbox["id"], after))
                     for n in range(waiters)]
            await asyncio.sleep(2 + waiters / 500)  # every call has reached the server and subscribed
            rss = max(rss, server.rss_mb())
            server_cpu -= server.cpu_seconds()
            client_cpu -= time.process_time()
            began = time.perf_counter()
            await smtp.sendmail("load@bench.example.org", [inbox["address"]], raw)
            for outcome in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(outcome, BaseException) or subject not in outcome[1]:
                    dropped_waits += 1
                else:
                    latencies.append(outcome[0] - began)
                    after = outcome[2]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(subject in s.arrived or s.ended for s in subs):
                await asyncio.sleep(0.05)
            server_cpu += server.cpu_seconds()
            client_cpu += time.process_time()
            streamed.extend(s.arrived[subject] - began for s in subs if subject in s.arrived)
    finally:
        await smtp.quit()
    dropped_subs = sum(1 for s in subs if s.ended or len(s.arrived) < messages)
    for task in tasks:
        task.cancel()
    return streamed, latencies, dropped_subs, dropped_waits, rss, server_cpu / messages, client_cpu / messages


def run(quick: bool = False, subscribers: int | None = None, waiters: int | None = None,
        messages: int | None = None) -> list[Figure]:
    subscribers = subscribers if subscribers is not None else (200 if quick else 1000)
    waiters = waiters if waiters is not None else (200 if quick else 1000)
    messages = messages or (3 if quick else 5)
    env = {"COMMUNE_MAX_CONNECTIONS": str(subscribers + waiters + 100)}
    with tempfile.TemporaryDirectory(prefix="commune-fanout-bench-") as tmp:
        data_dir = Path(tmp)
        with ServerProcess(data_dir, env=env).start(want_smtp=True) as server:
            key = (data_dir / "admin.key").read_text().strip()
            inbox = Api(server.port, key).call("POST", "/v1/inboxes", {"local_part": "fanout"})["data"]
            streamed, answered, dropped_subs, dropped_waits, rss, server_cpu, client_cpu = asyncio.run(
                fan_out(server, key, inbox, subscribers, waiters, messages))
    expected = (subscribers + waiters) * messages
    latencies = streamed + answered
    return [
        Figure(f"fan-out to {subscribers} SSE + {waiters} wait, {messages} messages: p99",
               f"{percentile(latencies, 0.99) * 1000:.1f} ms (p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
               f" {len(latencies)} of {expected} deliveries)", "< 250 ms",
               bool(latencies) and percentile(latencies, 0.99) < 0.250 and len(latencies) == expected),
        Figure("fan-out: SSE stream / wait answer p50, p99",
               f"{percentile(streamed, 0.5) * 1000:.1f}, {percentile(streamed, 0.99) * 1000:.1f} ms /"
               f" {percentile(answered, 0.5) * 1000:.1f}, {percentile(answered, 0.99) * 1000:.1f} ms"),
        Figure("fan-out: CPU per message, server / this bench's clients",
               f"{server_cpu * 1000:.0f} ms / {client_cpu * 1000:.0f} ms (same 2 cores)"),
        Figure("fan-out: subscribers / wait calls dropped", f"{dropped_subs} / {dropped_waits}", "0 / 0",
               dropped_subs == 0 and dropped_waits == 0),
        Figure("fan-out: server RSS with everyone connected", f"{rss:.0f} MB", "< 200 MB", rss < 200),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 + 200 connections, 3 messages")
    parser.add_argument("--subscribers", type=int, help="SSE subscribers (default 1 000)")
    parser.add_argument("--waiters", type=int, help="wait callers (default 1 000)")
    parser.add_argument("--messages", type=int, help="messages sent one at a time (default 5)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.subscribers, args.waiters, args.messages), "Live fan-out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
