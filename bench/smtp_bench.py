"""SMTP ingest: many concurrent aiosmtplib clients delivering into our listener, beside the peers a user
would pick instead.

5 KB messages through 32 connections, in three alternating rounds: our server (fresh, durable: rows
committed and synced before the `250`), then MailDev (the most downloaded local mail catcher, storing
`.eml` files in a directory; installed by this script with npm into the bench cache when `node` is
present, skipped with a note otherwise), then `python -m aiosmtpd` with its do-nothing `Sink` handler
(the ceiling of the protocol and this client). It prints the median messages/s of each, our ratio to
each peer, and server CPU per message from `/proc` (steadier than messages/s on a shared machine),
and checks that every message answered 250 is in the database. Then 200 KB attachments (ours and
the Sink), and last the API's p99 (thread list, one client) while 10 × 20 MB messages arrive.

    python3 bench/smtp_bench.py [--quick] [--messages 4000] [--no-maildev]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
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

from bench.common import (
    CACHE_DIR,
    Figure,
    ServerProcess,
    free_port,
    percentile,
    print_table,
    process_cpu_seconds,
    wait_listening,
)

CONNECTIONS = 32
ROUNDS = 3
MAILDEV = "maildev@3.0.0"
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


@dataclass
class Round:
    """One batch delivered to one server: the client's figures and the server's CPU per accepted message."""

    result: IngestResult
    cpu_per_message: float


def measured(port: int, pid: int, recipient: str, messages: list[bytes]) -> Round:
    """Deliver `messages` and read the server process's CPU time (all threads) before and after."""
    before = process_cpu_seconds(pid)
    result = asyncio.run(deliver(port, recipient, messages, CONNECTIONS))
    return Round(result, (process_cpu_seconds(pid) - before) / max(1, len(result.accepted)))


class Peer:
    """Another SMTP server in its own process on a free loopback port (`{port}` in the command)."""

    def __init__(self, command: list[str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([part.format(port=self.port, web=free_port()) for part in command],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(self.port)
        except OSError:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


SINK = [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"]


def maildev_command(mail_dir: Path) -> tuple[list[str] | None, str]:
    """How to run MailDev storing `.eml` files in `mail_dir`, installing it into the bench cache with npm
    on first use; or None and why it cannot run here. Never a runtime or test dependency."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "skipped: node and npm are needed to install and run MailDev"
    home = CACHE_DIR / MAILDEV.replace("@", "-")
    package = home / "node_modules" / "maildev" / "package.json"
    if not package.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            installed = subprocess.run([npm, "install", "--prefix", str(home), MAILDEV, "--no-audit", "--no-fund",
                                        "--loglevel=error"], capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return None, f"skipped: npm install {MAILDEV} took over 10 minutes"
        if installed.returncode != 0 or not package.exists():
            reason = (installed.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"skipped: npm install {MAILDEV} failed ({reason})"
    entry = package.parent / json.loads(package.read_text())["bin"]["maildev"]
    return [node, str(entry), "--smtp", "{port}", "--ip", "127.0.0.1", "--web", "{web}", "--web-ip", "127.0.0.1",
            "--mail-directory", str(mail_dir), "--silent"], ""


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


def _rates(rounds: list[Round]) -> str:
    return ", ".join(f"{r.result.rate:,.0f}" for r in rounds)


def _peer_figures(name: str, target: str, ours: list[Round], peer: list[Round], ratio_target: float | None
                  ) -> list[Figure]:
    """The peer's median rate and CPU per message, and our ratio to it (median of the rounds' ratios)."""
    ratios = [o.result.rate / p.result.rate if p.result.rate else 0.0 for o, p in zip(ours, peer, strict=True)]
    ratio = statistics.median(ratios)
    return [
        Figure(f"smtp 5 KB: {name}", f"{statistics.median(r.result.rate for r in peer):,.0f} msg/s"
               f" (rounds {_rates(peer)}), CPU {statistics.median(r.cpu_per_message for r in peer) * 1000:.2f} ms/msg"),
        Figure(f"smtp 5 KB: ours / {name}", f"{ratio:.2f}x (rounds {', '.join(f'{x:.2f}' for x in ratios)})",
               target, None if ratio_target is None else ratio >= ratio_target),
    ]


def run(quick: bool = False, messages: int | None = None, maildev: bool = True) -> list[Figure]:
    """Alternating rounds of ours, MailDev and the Sink; 200 KB attachments; the large-message API check."""
    count = messages or (1000 if quick else 4000)
    run_id = f"r{int(time.time())}"
    figures: list[Figure] = []
    ours: list[Round] = []
    peers: dict[str, list[Round]] = {"MailDev": [], "Sink": []}
    with tempfile.TemporaryDirectory(prefix="commune-smtp-bench-") as tmp:
        data_dir = Path(tmp) / "commune"
        data_dir.mkdir()
        command, note = maildev_command(Path(tmp) / "maildev") if maildev else (None, "skipped: --no-maildev")
        # Every bench connection comes from one address: allow them all past the per-client cap.
        per_client = {"COMMUNE_SMTP_MAX_CONNECTIONS_PER_CLIENT": str(CONNECTIONS)}
        running: dict[str, Peer] = {}
        try:
            running["Sink"] = Peer(SINK)
            if command is not None:
                running["MailDev"] = Peer(command)
            with ServerProcess(data_dir, env=per_client).start(want_smtp=True) as server:
                assert server.proc is not None
                admin = Api(server.port, (data_dir / "admin.key").read_text().strip())
                inbox = admin.call("POST", "/v1/inboxes", {"local_part": "bench"})["data"]
                recipient = inbox["address"]
                small = [make_message(n, f"{run_id}-5k", recipient) for n in range(200 + ROUNDS * count)]
                large = [make_message(n, f"{run_id}-att", recipient, attachment=200_000, body_bytes=1000)
                         for n in range(max(100, count // 8))]
                asyncio.run(deliver(server.smtp_port, recipient, small[:200], CONNECTIONS))
                for peer in running.values():
                    asyncio.run(deliver(peer.port, recipient, small[:200], CONNECTIONS))
                for number in range(ROUNDS):
                    batch = small[200 + number * count:200 + (number + 1) * count]
                    ours.append(measured(server.smtp_port, server.proc.pid, recipient, batch))
                    for name, peer in running.items():
                        peers[name].append(measured(peer.port, peer.proc.pid, recipient, batch))
                ours_large = asyncio.run(deliver(server.smtp_port, recipient, large, CONNECTIONS))
                sink_large = asyncio.run(deliver(running["Sink"].port, recipient, large, CONNECTIONS))
                api_p99, large_accepted = api_p99_during_large(server, admin.headers["Authorization"][7:], inbox,
                                                               3 if quick else 10, 20_000_000)
                server.stop()
                have = stored_ids(data_dir, inbox["id"])
        finally:
            for peer in running.values():
                peer.stop()

    median = sorted(ours, key=lambda r: r.result.rate)[len(ours) // 2]
    rate = median.result.rate
    cpu = statistics.median(r.cpu_per_message for r in ours)
    refused = sum(r.result.refused for r in ours)
    figures.append(Figure(
        "smtp 5 KB: ours, durable", f"{rate:,.0f} msg/s (rounds {_rates(ours)}), p50 {median.result.p50 * 1000:.1f} ms,"
        f" p99 {median.result.p99 * 1000:.1f} ms" + (f", {refused} refused" if refused else ""),
        ">= 1000 msg/s", rate >= 1000))
    figures.append(Figure("smtp 5 KB: ours, server CPU per message",
                          f"{cpu * 1000:.2f} ms (rounds {', '.join(f'{r.cpu_per_message * 1000:.2f}' for r in ours)})",
                          "<= 0.8 ms", cpu <= 0.0008))
    if peers["MailDev"]:
        figures.extend(_peer_figures(f"MailDev {MAILDEV.split('@')[1]}", ">= 1.5x", ours, peers["MailDev"], 1.5))
    else:
        figures.append(Figure("smtp 5 KB: MailDev", note))
    figures.extend(_peer_figures("aiosmtpd Sink ceiling", ">= 0.5x", ours, peers["Sink"], 0.5))
    wanted = {f"<{run_id}-5k-{n}@bench.example.org>" for n in range(200, 200 + ROUNDS * count)}
    acknowledged = {f"<{run_id}-5k-{200 + number * count + int(n)}@bench.example.org>"
                    for number, r in enumerate(ours) for n in r.result.accepted}
    missing = len((acknowledged & wanted) - have)
    figures.append(Figure("smtp 5 KB: answered 250 but missing from the database",
                          f"{missing} of {len(acknowledged)}", "0", missing == 0))

    ratio = ours_large.rate / sink_large.rate if sink_large.rate else 0.0
    wanted_large = {f"<{run_id}-att-{n}@bench.example.org>" for n in ours_large.accepted}
    missing_large = len(wanted_large - have)
    figures.append(Figure("smtp 200 KB attachment: ours", f"{ours_large.rate:,.0f} msg/s, p50"
                          f" {ours_large.p50 * 1000:.1f} ms, p99 {ours_large.p99 * 1000:.1f} ms"))
    figures.append(Figure("smtp 200 KB attachment: aiosmtpd Sink ceiling", f"{sink_large.rate:,.0f} msg/s"))
    figures.append(Figure("smtp 200 KB attachment: ours / ceiling", f"{ratio:.2f}x", ">= 0.5x", ratio >= 0.5))
    figures.append(Figure("smtp 200 KB attachment: answered 250 but missing from the database",
                          f"{missing_large} of {len(wanted_large)}", "0", missing_large == 0))
    large_count = 3 if quick else 10
    figures.append(Figure(f"smtp API thread-list p99 while {large_count} x 20 MB arrive "
                          f"({large_accepted} accepted)", f"{api_p99 * 1000:.1f} ms", "< 250 ms", api_p99 < 0.250))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 000 messages and 3 large ones")
    parser.add_argument("--messages", type=int, help="5 KB messages per round (default 4 000)")
    parser.add_argument("--no-maildev", action="store_true", help="leave MailDev out (no npm install)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.messages, not args.no_maildev), "SMTP ingest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
