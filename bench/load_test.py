"""The long load run: hundreds of keep-alive HTTP connections and concurrent SMTP sessions at once.

Runs `commune-server serve` in its own process, drives it for `--duration` seconds (two equal halves),
and prints errors, requests and messages per second, and the server's open file descriptors and
resident memory before, between and after the halves. Growth in the second half, once caches are warm,
would be a leak. Every fourth SMTP message is hostile MIME (deep nesting, thousands of headers, broken
base64), and slowloris clients ride along; they must be cut off without hurting the rest.

    python -m bench.load_test                      # 60 s, 300 connections, 20 SMTP sessions
    python -m bench.load_test --duration 10 --connections 100 --smtp 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import httpx

from bench.common import Figure, ServerProcess, print_table

HEADER_TIMEOUT = 10.0


@dataclass
class Tally:
    requests: int = 0
    messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    slow_cut: int = 0
    slow_survived: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def anon_rss_mb(pid: int) -> float:
    """Resident memory not backed by a file: the heap, where a leak shows (mmap'd database pages do not)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def http_client(port: int, request: bytes, stop: float, tally: Tally) -> None:
    """One keep-alive connection sending requests back to back until `stop`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    except OSError as exc:
        tally.error(f"http connect: {type(exc).__name__}")
        return
    try:
        while time.monotonic() < stop:
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), 30)
            if status == 200:
                tally.requests += 1
            else:
                tally.error(f"http {status}")
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        tally.error(f"http {type(exc).__name__}")
    finally:
        writer.close()


def _nested(depth: int) -> str:
    part = "Content-Type: text/plain\r\n\r\ndeep\r\n"
    for level in range(depth):
        part = (f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n'
                f"--b{level}\r\n{part}\r\n--b{level}--\r\n")
    return part


# Every fourth message is hostile, so memory and fds are watched under the parser's worst cases too.
HOSTILE = [
    _nested(200),
    "".join(f"X-Filler-{n}: {n}\r\n" for n in range(2000)) + "\r\nmany headers\r\n",
    "Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
]


async def smtp_session(port: int, recipient: str, stop: float, tally: Tally, worker: int) -> None:
    """One SMTP connection delivering messages one after another until `stop`."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    try:
        await client.connect()
        number = 0
        while time.monotonic() < stop:
            number += 1
            rest = HOSTILE[number // 4 % len(HOSTILE)] if number % 4 == 0 else "\r\n" + "body line\r\n" * 40
            message = (f"From: load@example.net\r\nTo: {recipient}\r\nSubject: load {worker}-{number}\r\n"
                       f"Message-ID: <load-{worker}-{number}-{time.time_ns()}@example.net>\r\n" + rest)
            await client.sendmail("load@example.net", [recipient], message.encode())
            tally.messages += 1
        await client.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        tally.error(f"smtp {type(exc).__name__}")


async def slow_client(port: int, stop: float, tally: Tally) -> None:
    """A slowloris: one header byte every half second; the server should hang up on it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        for byte in b"GET /health HTTP/1.1\r\n" + b"X-Slow: " + b"z" * 10_000:
            if time.monotonic() >= stop:
                tally.slow_survived += 1
                return
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(1), 0.5)  # a 408 or the close: either way, cut off
            except TimeoutError:
                continue
            tally.slow_cut += 1
            return
    except OSError:
        tally.slow_cut += 1
    finally:
        writer.close()


async def phase(server: ServerProcess, key: str, inbox: dict, seconds: float, connections: int,
                sessions: int, tally: Tally) -> None:
    stop = time.monotonic() + seconds
    requests = [
        f"GET /v1/inboxes/{inbox['id']} HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {key}\r\n\r\n".encode(),
        f"GET /v1/messages?inbox_id={inbox['id']}&limit=20 HTTP/1.1\r\nHost: load\r\n"
        f"Authorization: Bearer {key}\r\n\r\n".encode(),
    ]
    tasks = [http_client(server.port, requests[n % 2], stop, tally) for n in range(connections)]
    tasks += [smtp_session(server.smtp_port, inbox["address"], stop, tally, n) for n in range(sessions)]
    tasks += [slow_client(server.port, stop, tally) for _ in range(10)]
    await asyncio.gather(*tasks)


def run(duration: float, connections: int, sessions: int) -> list[Figure]:
    # Every connection comes from 127.0.0.1, so the per-address cap is raised with the global one.
    caps = {"COMMUNE_MAX_CONNECTIONS": str(connections + 100),
            "COMMUNE_MAX_CONNECTIONS_PER_CLIENT": str(connections + 100)}
    with tempfile.TemporaryDirectory() as data_dir, ServerProcess(Path(data_dir), env=caps) as server:
        server.start(want_smtp=True)
        assert server.proc is not None
        pid = server.proc.pid
        key = (Path(data_dir) / "admin.key").read_text().strip()
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
            inbox = api.post("/v1/inboxes", json={"local_part": "load"}).json()["data"]
        samples = [("start", open_fds(pid), server.rss_mb(), anon_rss_mb(pid))]
        tallies = []
        for name in ("first half", "second half"):
            tally = Tally()
            started = time.monotonic()
            asyncio.run(phase(server, key, inbox, duration / 2, connections, sessions, tally))
            elapsed = time.monotonic() - started
            time.sleep(2)  # let closed connections and idle sessions be reaped
            samples.append((f"after {name}", open_fds(pid), server.rss_mb(), anon_rss_mb(pid)))
            tallies.append((name, tally, elapsed))
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
            stored = api.get("/v1/threads", params={"inbox_id": inbox["id"], "limit": 1}).status_code
    figures = []
    for name, tally, elapsed in tallies:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(tally.errors.items())) or "none"
        figures += [
            Figure(f"{name}: HTTP requests/s ({connections} keep-alive)", f"{tally.requests / elapsed:.0f}"),
            Figure(f"{name}: SMTP messages/s ({sessions} sessions)", f"{tally.messages / elapsed:.1f}"),
            Figure(f"{name}: errors", errors, "none", not tally.errors),
            # The default header timeout is 10 s; a shorter half cannot show the cut-off.
            Figure(f"{name}: slowloris clients cut off", f"{tally.slow_cut}/10", "10/10",
                   tally.slow_cut == 10 if duration / 2 > HEADER_TIMEOUT else None),
        ]
    for label, fds, rss, anon in samples:
        figures.append(Figure(f"server fds / RSS (anonymous) {label}", f"{fds} / {rss:.1f} MB ({anon:.1f} MB)"))
    fd_growth = samples[2][1] - samples[1][1]
    rss_growth = samples[2][2] - samples[1][2]
    anon_growth = samples[2][3] - samples[1][3]
    figures += [
        Figure("fd growth over the second half", str(fd_growth), "<= 2", fd_growth <= 2),
        Figure("RSS growth over the second half", f"{rss_growth:+.1f} MB"),
        Figure("anonymous RSS growth over the second half", f"{anon_growth:+.1f} MB", "< 10 MB", anon_growth < 10),
        Figure("API still answers after the run", str(stored), "200", stored == 200),
    ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds in total (two halves)")
    parser.add_argument("--connections", type=int, default=300, help="keep-alive HTTP connections")
    parser.add_argument("--smtp", type=int, default=20, help="concurrent SMTP sessions")
    args = parser.parse_args(argv)
    figures = run(args.duration, args.connections, args.smtp)
    print_table(figures, f"load: {args.duration:g} s, {args.connections} HTTP connections, {args.smtp} SMTP sessions")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
