"""TUI: time from starting `commune-tui` to a first screen that shows threads, on the 100 k mailbox.

The server runs in its own process on the seeded mailbox; `commune-tui --server … --api-key …` runs in a
pseudo-terminal (120 × 36) exactly as a user starts it, and the clock stops when a thread subject from
the mailbox appears on the terminal. Repeated a few times; the median is the figure.

    python3 bench/tui_bench.py [--quick] [--messages 100000]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE_DIR, Figure, ServerProcess, percentile, print_table
from bench.seed import seed

TARGET = 1.5
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def time_to_threads(url: str, key: str, marker: bytes, timeout: float = 60.0) -> float:
    """Seconds from spawning `commune-tui` in a pty until `marker` is drawn on its screen."""
    command = [sys.executable, "-m", "commune_tui", "--server", url, "--api-key", key]
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "36"}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    began = time.perf_counter()
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = b""
    try:
        while time.perf_counter() - began < timeout:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            screen += chunk
            if marker in ESCAPES.sub(b"", screen[-200_000:]):
                return time.perf_counter() - began
        raise RuntimeError(f"commune-tui never showed {marker!r}; last output: {ESCAPES.sub(b'', screen)[-500:]!r}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        os.close(master)


def run(quick: bool = False, messages: int | None = None) -> list[Figure]:
    """Seed (or reuse) the mailbox and time a few cold starts of the terminal client."""
    messages = messages or (10_000 if quick else 100_000)
    info = seed(CACHE_DIR / f"mailbox-{messages}", messages)
    # The newest thread is drawn on the first row of the first page.
    marker = f"Bench thread {info.threads - 1}".encode()
    with ServerProcess(Path(info.data_dir)).start() as server:
        times = [time_to_threads(server.url, info.key, marker) for _ in range(2 if quick else 5)]
    median = percentile(times, 0.5)
    size = f"{messages // 1000} k"
    return [Figure(f"tui start to first screen with threads ({size} mailbox, median of {len(times)})",
                   f"{median:.2f} s (best {min(times):.2f} s)", f"< {TARGET} s", median < TARGET)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 k mailbox, two starts")
    parser.add_argument("--messages", type=int, help="mailbox size (default 100 000)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.messages), "TUI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
