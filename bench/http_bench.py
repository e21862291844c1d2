"""HTTP API throughput and latency under wrk (32 keep-alive connections) against a seeded mailbox.

Measures our authenticated `GET /v1/inboxes`, `GET /v1/threads?inbox_id=…&limit=20` and
`GET /v1/threads/{id}/messages`, then the same thread-list query served by uvicorn + Starlette with
no auth (`reference_app.py`), in the same run, and prints requests/s, p50, p99 and the ratio.

    python3 bench/http_bench.py [--quick] [--duration 10] [--messages 10000]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Self

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE_DIR, Figure, ServerProcess, free_port, print_table, wait_listening
from bench.seed import Seeded, seed

CONNECTIONS = 32
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class WrkResult:
    rps: float
    p50: float
    p99: float
    errors: int


def ensure_tools() -> None:
    """Install wrk (Debian package) and the reference's uvicorn/Starlette/httptools when missing."""
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    missing = [m for m in ("uvicorn", "starlette", "httptools") if importlib.util.find_spec(m) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def wrk(url: str, duration: float, headers: dict[str, str] | None = None) -> WrkResult:
    """Run wrk with CONNECTIONS keep-alive connections on one thread and parse its `--latency` report."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(rps, p50, p99, errors)


class ReferenceServer:
    """The uvicorn + Starlette reference (`reference_app.py`) serving the same query, in its own process."""

    def __init__(self, info: Seeded) -> None:
        self.port = free_port()
        script = Path(__file__).with_name("reference_app.py")
        self.proc = subprocess.Popen([sys.executable, str(script), info.data_dir, str(self.port), info.org_id])
        self.url = f"http://127.0.0.1:{self.port}/v1/threads?inbox_id={info.inbox_id}&limit=20"

    def __enter__(self) -> Self:
        wait_listening(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _row(name: str, result: WrkResult) -> Figure:
    errors = f", {result.errors} errors" if result.errors else ""
    value = f"{result.rps:,.0f} req/s, p50 {result.p50 * 1000:.2f} ms, p99 {result.p99 * 1000:.2f} ms{errors}"
    return Figure(name, value)


def run(quick: bool = False, duration: float | None = None, messages: int | None = None,
        rounds: int | None = None) -> list[Figure]:
    """Seed (or reuse) a mailbox, run every endpoint and the reference, return the figures."""
    ensure_tools()
    duration = duration or (3.0 if quick else 10.0)
    rounds = rounds or (1 if quick else 3)
    messages = messages or 10_000
    info = seed(CACHE_DIR / f"mailbox-{messages}", messages)
    auth = {"Authorization": f"Bearer {info.key}"}
    endpoints = [
        ("GET /v1/inboxes", "/v1/inboxes"),
        ("GET /v1/threads?limit=20", f"/v1/threads?inbox_id={info.inbox_id}&limit=20"),
        ("GET /v1/threads/{id}/messages", f"/v1/threads/{info.middle_thread_id}/messages"),
    ]
    results: dict[str, WrkResult] = {}
    pairs: list[tuple[WrkResult, WrkResult]] = []
    with ServerProcess(Path(info.data_dir)).start() as server, ReferenceServer(info) as reference_server:
        for name, path in endpoints:
            wrk(server.url + path, 1, auth)
            results[name] = wrk(server.url + path, duration, auth)
        wrk(reference_server.url, 1)
        # Ours and the reference alternate, so a neighbour's load on the machine falls on both sides.
        for _ in range(rounds):
            pairs.append((wrk(server.url + endpoints[1][1], duration, auth), wrk(reference_server.url, duration)))
    ratios = [o.rps / r.rps if r.rps else 0.0 for o, r in pairs]
    # The pair with the median ratio stands for the run; every ratio is printed beside it.
    median = sorted(range(len(pairs)), key=lambda i: ratios[i])[len(pairs) // 2]
    ours, reference = pairs[median]
    ratio = ratios[median]
    results["GET /v1/threads?limit=20"] = ours
    figures = [_row(f"http {name}", result) for name, result in results.items()]
    figures.append(_row("http reference (uvicorn+Starlette, no auth) thread list", reference))
    every = ", ".join(f"{r:.2f}" for r in ratios)
    figures.append(Figure(f"http thread list: ours / reference req/s (median of {every})", f"{ratio:.2f}x",
                          ">= 1.5x", ratio >= 1.5))
    figures.append(Figure("http thread list p99 at 32 connections", f"{ours.p99 * 1000:.2f} ms", "< 10 ms",
                          ours.p99 < 0.010))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    parser.add_argument("--duration", type=float, help="seconds per wrk run")
    parser.add_argument("--messages", type=int, help="mailbox size to seed (default 10 000)")
    parser.add_argument("--rounds", type=int, help="alternating ours/reference thread-list pairs (default 3)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.duration, args.messages, args.rounds), "HTTP API")
    return 0


if __name__ == "__main__":
    sys.exit(main())
