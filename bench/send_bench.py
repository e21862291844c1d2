"""Send path: `POST /v1/messages/send` to a local recipient and to an external one relayed to a local sink.

The server runs with `--relay` pointing at an aiosmtpd sink in a child process (which notes when each
message arrives: its own GIL, so the clients here do not delay its answers) and `--dns-servers` at the
test DNS server (so the external domain has an MX). For each kind: requests/s, p50/p99 of the API call
with 8 concurrent clients and the server's CPU per request (from `/proc`); for the external kind also
the end-to-end time from the request to the sink having the message (both clocks are the system's
monotonic clock, which `perf_counter` reads in every process).

    python3 bench/send_bench.py [--quick] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Figure,
    ServerProcess,
    free_port,
    percentile,
    print_table,
    process_cpu_seconds,
)
from tests.dnsserver import TestDNSServer

CLIENTS = 8
EXTERNAL_DOMAIN = "external.bench.example"
SUBJECT = re.compile(rb"^Subject: (bench-\S+)", re.MULTILINE | re.IGNORECASE)


class ArrivalSink:
    """An aiosmtpd handler that accepts everything and notes when each bench subject arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        found = SUBJECT.search(envelope.original_content or b"")  # type: ignore[attr-defined]
        if found:
            with self.lock:
                self.arrived.setdefault(found.group(1).decode(), time.perf_counter())
        return "250 OK"


class SinkProcess:
    """An `ArrivalSink` on a free port in a child process; `arrived()` asks it what arrived so far."""

    def __init__(self) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_serve_sink, args=(self.port, child), daemon=True)

    def start(self) -> SinkProcess:
        self.proc.start()
        if not self.conn.poll(30) or self.conn.recv() != "ready":
            raise RuntimeError("the relay sink did not start")
        return self

    def arrived(self) -> dict[str, float]:
        self.conn.send("arrived")
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send("stop")
            self.proc.join(10)


def _serve_sink(port: int, conn: multiprocessing.connection.Connection) -> None:
    sink = ArrivalSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    conn.send("ready")
    while conn.recv() != "stop":
        with sink.lock:
            conn.send(dict(sink.arrived))
    controller.stop()


async def send_all(url: str, key: str, sender_inbox: str, recipient: str, count: int,
                   tag: str) -> tuple[list[float], dict[str, float], float]:
    """`count` sends from CLIENTS concurrent clients; latencies, start time per subject, elapsed."""
    latencies: list[float] = []
    started: dict[str, float] = {}
    numbers = iter(range(count))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        async def worker() -> None:
            for number in numbers:
                subject = f"bench-{tag}-{number}"
                began = time.perf_counter()
                started[subject] = began
                response = await client.post("/v1/messages/send", json={
                    "to": [recipient], "subject": subject, "text": f"Benchmark message {number}.\n" * 20,
                    "inbox_id": sender_inbox,
                })
                if response.status_code != 200:
                    raise RuntimeError(f"send answered {response.status_code}: {response.text}")
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return latencies, started, time.perf_counter() - began


def _figure(name: str, latencies: list[float], elapsed: float, cpu: float, target: float) -> Figure:
    rate = len(latencies) / elapsed
    return Figure(name, f"{rate:,.0f} req/s, p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
                  f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms, server CPU {cpu / len(latencies) * 1000:.2f} ms/req",
                  f">= {target:,.0f} req/s", rate >= target)


def run(quick: bool = False, requests: int | None = None) -> list[Figure]:
    """Local and external sends against a fresh server; returns the figures."""
    count = requests or (100 if quick else 400)
    sink = SinkProcess().start()
    dns = TestDNSServer().start()
    dns.publish(EXTERNAL_DOMAIN, "MX", f"10 mx.{EXTERNAL_DOMAIN}.")
    figures: list[Figure] = []
    try:
        relay = f"127.0.0.1:{sink.port}"
        with tempfile.TemporaryDirectory(prefix="commune-send-bench-") as tmp:
            data_dir = Path(tmp)
            server = ServerProcess(data_dir, "--relay", relay, "--dns-servers", dns.address)
            with server.start():
                key = (data_dir / "admin.key").read_text().strip()
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
                    sender = api.post("/v1/inboxes", json={"local_part": "sender"}).json()["data"]
                    local = api.post("/v1/inboxes", json={"local_part": "receiver"}).json()["data"]
                asyncio.run(send_all(server.url, key, sender["id"], local["address"], 20, "warm"))
                assert server.proc is not None
                before = process_cpu_seconds(server.proc.pid)
                latencies, _, elapsed = asyncio.run(
                    send_all(server.url, key, sender["id"], local["address"], count, "local"))
                cpu = process_cpu_seconds(server.proc.pid) - before
                figures.append(_figure("send to a local recipient", latencies, elapsed, cpu, 800))
                before = process_cpu_seconds(server.proc.pid)
                latencies, started, elapsed = asyncio.run(
                    send_all(server.url, key, sender["id"], f"someone@{EXTERNAL_DOMAIN}", count, "external"))
                # The server's CPU while the API calls ran, the relaying that overlapped them included.
                cpu = process_cpu_seconds(server.proc.pid) - before
                figures.append(_figure("send to an external recipient (relay)", latencies, elapsed, cpu, 400))
                deadline = time.monotonic() + 60
                while len(arrived := sink.arrived()) < count and time.monotonic() < deadline:
                    time.sleep(0.05)
                ends = [arrived[s] - began for s, began in started.items() if s in arrived]
                figures.append(Figure(
                    "send external: request to sink has it",
                    f"p50 {percentile(ends, 0.5) * 1000:.1f} ms, p99 {percentile(ends, 0.99) * 1000:.1f} ms"
                    f" ({len(ends)} of {count} arrived)", "p50 < 50 ms", percentile(ends, 0.5) < 0.050,
                ))
    finally:
        dns.stop()
        sink.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 sends of each kind")
    parser.add_argument("--requests", type=int, help="sends of each kind (default 400)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.requests), "Send path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
