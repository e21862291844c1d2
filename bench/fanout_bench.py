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


def _request_bytes(path: str, key: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


async def _connect(protocol: asyncio.Protocol, port: int, number: int) -> None:
    await asyncio.get_running_loop().create_connection(lambda: protocol, "127.0.0.1", port,
                                                       local_addr=source(number))


RECEIVED = b"event: message.received\ndata: "


class Subscriber(asyncio.Protocol):
    """One `GET /v1/events` stream, read as raw bytes: notes when each `message.received` frame arrives.

    The clock is read in `data_received`, as soon as the frame's `data:` line is complete; the line is
    decoded only after the measurement, so the 1 000 streams cost this process little while they count.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.lines: list[tuple[float, bytes]] = []
        self.arrived: dict[str, float] = {}
        self.ended = False
        self.connected = asyncio.Event()
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer + data
        if not self.connected.is_set():
            if not buffer.startswith(b"HTTP/1.1 200 "):
                if len(buffer) >= 13:
                    self.transport.close()  # type: ignore[union-attr]
                self.buffer = buffer
                return
            if b": connected" not in buffer:
                self.buffer = buffer
                return
            self.connected.set()
        start = 0
        # Frames may straddle reads: an incomplete `data:` line, or a tail that may begin one, is kept.
        while True:
            found = buffer.find(RECEIVED, start)
            if found < 0:
                keep = max(start, len(buffer) - len(RECEIVED))
                break
            end = buffer.find(b"\n", found + len(RECEIVED))
            if end < 0:
                keep = found
                break
            self.lines.append((now, buffer[found + len(RECEIVED):end]))
            start = end + 1
        self.buffer = buffer[keep:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.connected.set()

    def decode(self) -> None:
        """Subjects of the frames read so far, with the time each first arrived."""
        for when, line in self.lines:
            self.arrived.setdefault(json.loads(line)["message"]["subject"], when)
        self.lines.clear()


class WaitCall(asyncio.Protocol):
    """One `GET /v1/messages/wait`: the time its whole answer had arrived, and the answer's bytes."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = bytearray()
        self.needed = -1
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.needed < 0:
            head_end = self.data.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.data[:head_end]).lower()
            length = head.partition(b"content-length:")[2].partition(b"\r\n")[0]
            self.needed = head_end + 4 + int(length or 0)
        if len(self.data) >= self.needed and not self.done.done():
            self.done.set_result(time.perf_counter())
            self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before the answer ended: {exc}"))

    def answer(self) -> tuple[list[str], str | None]:
        """The subjects in the answer and its `after`."""
        head, _, body = bytes(self.data).partition(b"\r\n\r\n")
        status = head.partition(b"\r\n")[0]
        if b" 200 " not in status:
            raise RuntimeError(f"answered {status!r}")
        answer = json.loads(body)
        return [m["subject"] for m in answer["data"]], answer["after"]


async def wait_once(port: int, number: int, key: str, inbox_id: str, after: str) -> tuple[float, WaitCall]:
    """One `GET /v1/messages/wait` answered: when its answer had arrived, and the call (decoded later)."""
    call = WaitCall(_request_bytes(f"/v1/messages/wait?inbox_id={inbox_id}&after={after}&timeout=60", key))
    await _connect(call, port, number)
    return await call.done, call


async def fan_out(server: ServerProcess, key: str, inbox: dict, subscribers: int, waiters: int,
                  messages: int) -> tuple[list[float], list[float], int, int, float, float, float]:
    """Latencies of every stream delivery and of every wait answer, dropped subscribers, dropped waits and
    the RSS with all connected; server and bench CPU per message from a sent message to its last delivery."""
    subs = [Subscriber(_request_bytes(f"/v1/events?inbox_id={inbox['id']}", key)) for _ in range(subscribers)]
    for n, s in enumerate(subs):
        await _connect(s, server.port, n)
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
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(s.lines or s.ended for s in subs):
                await asyncio.sleep(0.05)
            server_cpu += server.cpu_seconds()
            client_cpu += time.process_time()
            for outcome in outcomes:
                answer = None if isinstance(outcome, BaseException) else outcome[1].answer()
                if answer is None or subject not in answer[0]:
                    dropped_waits += 1
                else:
                    latencies.append(outcome[0] - began)
                    after = answer[1] or after
            for s in subs:
                s.decode()
            streamed.extend(s.arrived[subject] - began for s in subs if subject in s.arrived)
    finally:
        await smtp.quit()
    dropped_subs = sum(1 for s in subs if s.ended or len(s.arrived) < messages)
    for s in subs:
        s.transport.close()  # type: ignore[union-attr]
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
