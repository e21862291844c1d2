"""Server memory while strangers POST large bodies without a key: the body must never be buffered.

Starts `commune-server serve` in its own process, opens CLIENTS connections that each declare and start
sending a 40 MiB body with no `Authorization`, and samples the server's RSS from /proc until every
client has its answer. Prints the peak beside the target (< 150 MB for 100 clients).

    python3 bench/body_memory_bench.py [--clients 100] [--mib 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, ServerProcess, print_table

CHUNK = 1024 * 1024
RSS_TARGET_MB = 150.0
RSS_GIVE_UP_MB = 2000.0
"""Stop sending once the server passes this, so a server that buffers bodies does not exhaust the machine."""


async def post_unauthenticated(port: int, size: int, stop: asyncio.Event) -> str:
    """Send a keyless POST with a `size`-byte body; return the status line (or what ended the exchange)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /v1/attachments/upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
            f"X-Filename: big.bin\r\nContent-Length: {size}\r\n\r\n").encode()

    async def send_body() -> None:
        writer.write(head)
        chunk = b"x" * CHUNK
        sent = 0
        while sent < size and not stop.is_set():
            writer.write(chunk[: size - sent])
            sent += len(chunk)
            await writer.drain()

    sender = asyncio.create_task(send_body())
    try:
        line = await reader.readline()
        return line.decode("latin-1").strip() or "closed without an answer"
    except OSError as exc:
        return f"connection error: {type(exc).__name__}"
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def attack(server: ServerProcess, clients: int, size: int) -> tuple[float, float, dict[str, int], float]:
    """Run every client at once; the baseline RSS, the peak RSS, the answers by status line and the time."""
    baseline = peak = server.rss_mb()
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.rss_mb())
            if peak > RSS_GIVE_UP_MB:
                stop.set()
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    answers = await asyncio.gather(*(post_unauthenticated(server.port, size, stop) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.2)
    stop.set()
    await sampler
    peak = max(peak, server.rss_mb())
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    return baseline, peak, counts, elapsed


def run(clients: int = 100, mib: int = 40) -> list[Figure]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"COMMUNE_MAX_CONNECTIONS_PER_CLIENT": str(clients + 10), "COMMUNE_MAX_BODY_BYTES": str(mib << 20)}
        with ServerProcess(Path(data_dir), env=env).start() as server:
            baseline, peak, counts, elapsed = asyncio.run(attack(server, clients, mib << 20))
    gave_up = " (gave up: the server kept growing)" if peak > RSS_GIVE_UP_MB else ""
    answers = ", ".join(f"{n}× {line}" for line, n in sorted(counts.items()))
    return [
        Figure("server RSS before", f"{baseline:.0f} MB"),
        Figure(f"server RSS peak, {clients} keyless {mib} MiB POSTs at once", f"{peak:.0f} MB{gave_up}",
               f"< {RSS_TARGET_MB:.0f} MB", peak < RSS_TARGET_MB),
        Figure("answers", answers),
        Figure("time until every client had its answer", f"{elapsed:.2f} s"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="concurrent keyless POSTs (default 100)")
    parser.add_argument("--mib", type=int, default=40, help="declared body size in MiB (default 40)")
    args = parser.parse_args(argv)
    print_table(run(args.clients, args.mib), "Keyless large bodies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
