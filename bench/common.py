"""What every benchmark shares: a server in its own process, percentiles, figures and the result table."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("COMMUNE_BENCH_CACHE", Path(tempfile.gettempdir()) / "commune-bench"))
LISTENING = re.compile(r"(HTTP|SMTP) listening on (?:http://)?\[?([0-9a-f.:]+?)\]?:(\d+)")


@dataclass
class Figure:
    """One row of the report: what was measured, its value, the target beside it and whether it is met."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `samples` (0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def print_table(figures: list[Figure], title: str = "") -> None:
    """Print figures as one aligned table: figure, value, target, met?"""
    rows = [("figure", "value", "target", "met?")]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.name, f.value, f.target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    if title:
        print(f"\n== {title} ==")
    for number, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if number == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts connections on the loopback port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far, from `/proc/<pid>/stat`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of the line; the split starts at field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """`commune-server serve` on free loopback ports, in its own process (its own GIL), like a user runs it."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.extra = extra
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.smtp_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, want_smtp: bool = False, timeout: float = 60.0) -> ServerProcess:
        log_path = self.data_dir / "bench-server.log"
        log_file = log_path.open("wb")
        command = [sys.executable, "-m", "backend", "serve", "--data-dir", str(self.data_dir), "--port", "0",
                   "--smtp-port", "0", "--rate-limit", "0", "--log-level", "INFO", *self.extra]
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            for kind, _host, port in LISTENING.findall(text):
                if kind == "HTTP":
                    self.port = int(port)
                else:
                    self.smtp_port = int(port)
            if self.port and (self.smtp_port or not want_smtp):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{text}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not report its ports in time:\n{log_path.read_text(errors='replace')}")

    def rss_mb(self) -> float:
        """The server process's resident memory in MB (from /proc)."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        return kb / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far, all threads (from /proc)."""
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
