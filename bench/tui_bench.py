"""TUI: time from starting `commune-tui` to a first screen that shows threads, on the 100 k mailbox;
then opening a 300-thread inbox and a 30-message thread inside the running client, and
going from `O` to an Outbox of 1 000 messages held for approval (its first page and count shown).

The server runs in its own process on the seeded mailbox; `commune-tui --server … --api-key …` runs in a
pseudo-terminal (120 × 36) exactly as a user starts it, and the clock stops when a thread subject from
the mailbox appears on the terminal. Repeated a few times; the median is the figure.

Opening an inbox and a thread is timed in the client itself (Textual's headless driver at 120 × 36,
the same app `commune-tui` builds): from selecting the inbox until its first screen of rows is laid out
and drawn, and from `enter` on a thread until all of its messages are mounted and drawn; the client's
CPU time beside them tells work from waiting on a busy machine. The Outbox is timed the same way, against a server whose agent key had 1 000 sends held for approval.

    python3 bench/tui_bench.py [--quick] [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE_DIR, Figure, ServerProcess, percentile, print_table
from bench.seed import seed

TARGET = 1.5
OUTBOX_TARGET = 1.0
"""Seconds from `O` to the Awaiting approval tab with its count, first page and first row under review."""
OPEN_INBOX_TARGET = 0.150
OPEN_THREAD_TARGET = 0.300
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
                   f"{median:.2f} s (best {min(times):.2f} s)", f"< {TARGET} s", median < TARGET),
            outbox_figure(300 if quick else 1000, 2 if quick else 5)]


async def hold_many(url: str, agent: str, inbox: dict, count: int) -> None:
    """`count` sends by the agent from `inbox` (which holds them all) to itself, 8 at a time."""
    numbers = iter(range(count))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {agent}"}, timeout=60) as api:
        async def worker() -> None:
            for number in numbers:
                response = await api.post("/v1/messages/send", json={
                    "inboxId": inbox["id"], "to": [inbox["address"]], "subject": f"Held {number}",
                    "text": f"Outbox benchmark message {number}.\n" * 10})
                if response.status_code != 202:
                    raise RuntimeError(f"send answered {response.status_code}: {response.text}")

        await asyncio.gather(*(worker() for _ in range(8)))


async def time_outbox(url: str, key: str, folder: Path, rows: int, rounds: int) -> list[float]:
    """Seconds from `O` until the Outbox counts `rows` held messages, shows its first page and reviews
    the first message, `rounds` times."""
    from textual.widgets import TabbedContent

    from commune_tui.app import make_app
    from commune_tui.config import Settings
    from commune_tui.outbox import PAGE
    from commune_tui.screens.outbox import OutboxScreen
    from tests.tui.helpers import settle

    settings = Settings(base_url=url, api_key=key, data_dir=folder / "client", state_dir=folder / "state",
                        live_updates=False, cursor_blink=False)
    app = make_app(settings)
    times: list[float] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        for _ in range(rounds):
            began = time.perf_counter()
            await pilot.press("O")
            await _until(lambda: isinstance(app.screen, OutboxScreen)
                         and app.screen.table("approvals").row_count == min(rows, PAGE)
                         and f"({rows})" in str(app.screen.query_one(TabbedContent).get_tab("approvals").label)
                         and "Held" in str(app.screen.query_one("#review-text").render()), poll=0.005)
            await pilot.pause()  # laid out and drawn
            times.append(time.perf_counter() - began)
            await pilot.press("q")
            await settle(pilot)
    return times


def outbox_figure(count: int, rounds: int) -> Figure:
    with tempfile.TemporaryDirectory(prefix="commune-tui-outbox-") as tmp:
        folder = Path(tmp)
        (folder / "server").mkdir()
        with ServerProcess(folder / "server").start() as server:
            key = (folder / "server" / "admin.key").read_text().strip()
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
                inbox = api.post("/v1/inboxes", json={"local_part": "held"}).json()["data"]
                api.patch(f"/v1/inboxes/{inbox['id']}", json={"approval": "all"})
                agent = api.post("/v1/agent/api-keys", json={"name": "agent"}).json()["data"]["key"]
            asyncio.run(hold_many(server.url, agent, inbox, count))
            times = asyncio.run(time_outbox(server.url, key, folder, count, rounds))
    median = percentile(times, 0.5)
    return Figure(f"tui O to an Outbox of {count} held messages (median of {len(times)})",
                  f"{median:.2f} s (best {min(times):.2f} s)", f"< {OUTBOX_TARGET} s", median < OUTBOX_TARGET)


async def _until(condition: Callable[[], bool], timeout: float = 30.0, poll: float = 0.001) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError("the client never reached the expected state")
        await asyncio.sleep(poll)


async def time_opening(url: str, key: str, inbox_id: str, other_inbox_id: str,
                       rounds: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds to open the inbox (first screen of rows drawn) and one of its threads, `rounds` times;
    then the client's CPU seconds for each (on a busy machine the wall time is mostly waiting)."""
    from commune_tui.app import make_app
    from commune_tui.config import Settings
    from commune_tui.screens.mail import MailScreen
    from commune_tui.widgets.mailbox_tree import MailboxTree
    from commune_tui.widgets.reader import Reader
    from commune_tui.widgets.thread_list import ThreadList

    with tempfile.TemporaryDirectory() as state:
        settings = Settings(base_url=url, api_key=key, state_dir=Path(state), live_updates=False,
                            cursor_blink=False, keymap={})
        app = make_app(settings)
        inbox_times: list[float] = []
        thread_times: list[float] = []
        inbox_cpu: list[float] = []
        thread_cpu: list[float] = []
        async with app.run_test(size=(120, 36)) as pilot:
            await _until(lambda: isinstance(app.screen, MailScreen) and app.screen.is_mounted
                         and bool(app.screen.query(MailboxTree)) and bool(app.screen.tree.inbox_nodes))
            screen = app.screen
            threads, reader = screen.query_one(ThreadList), screen.query_one(Reader)
            for n in range(rounds):
                screen.tree.select_inbox(other_inbox_id)
                await _until(lambda: screen.inbox is not None and screen.inbox.id == other_inbox_id and not threads.loading
                             and threads.row_count < 10)
                await pilot.pause()
                began, cpu = time.perf_counter(), time.process_time()
                screen.tree.select_inbox(inbox_id)
                await _until(lambda: threads.row_count >= 30)
                await pilot.pause()  # laid out and drawn
                inbox_times.append(time.perf_counter() - began)
                inbox_cpu.append(time.process_time() - cpu)

                screen.set_focus(threads)
                threads.move_cursor(row=n + 1, animate=False)
                reader.border_title = ""
                await pilot.pause()
                began, cpu = time.perf_counter(), time.process_time()
                await pilot.press("enter")
                # The title is set once every message of the thread is mounted.
                await _until(lambda: reader.border_title == "Message · 30 in thread", poll=0.005)
                await pilot.pause()  # laid out and drawn
                thread_times.append(time.perf_counter() - began)
                thread_cpu.append(time.process_time() - cpu)
    return inbox_times, thread_times, inbox_cpu, thread_cpu


def run_opening(quick: bool = False) -> list[Figure]:
    """A 300-thread inbox of 30-message threads: open it, and open a thread, in the running client."""
    info = seed(CACHE_DIR / "mailbox-tui-300x30", 9000, per_thread=30)
    rounds = 3 if quick else 7
    with ServerProcess(Path(info.data_dir)).start() as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {info.key}"}) as api:
            inboxes = api.get("/v1/inboxes").json()["data"]
            other = next((i for i in inboxes if i["id"] != info.inbox_id), None)
            if other is None:
                other = api.post("/v1/inboxes", json={"local_part": "bench-other"}).json()["data"]
        inbox_times, thread_times, inbox_cpu, thread_cpu = asyncio.run(
            time_opening(server.url, info.key, info.inbox_id, other["id"], rounds))
    inbox, thread = percentile(inbox_times, 0.5), percentile(thread_times, 0.5)
    return [
        Figure(f"tui open a {info.threads}-thread inbox, first screen of rows drawn (median of {rounds})",
               _opening(inbox_times, inbox_cpu), f"< {OPEN_INBOX_TARGET * 1000:.0f} ms",
               inbox < OPEN_INBOX_TARGET),
        Figure(f"tui open a {info.messages // info.threads}-message thread (median of {rounds})",
               _opening(thread_times, thread_cpu), f"< {OPEN_THREAD_TARGET * 1000:.0f} ms",
               thread < OPEN_THREAD_TARGET),
    ]


def _opening(times: list[float], cpu: list[float]) -> str:
    return (f"{percentile(times, 0.5) * 1000:.0f} ms (best {min(times) * 1000:.0f} ms,"
            f" client CPU {percentile(cpu, 0.5) * 1000:.0f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 k mailbox, two starts")
    parser.add_argument("--messages", type=int, help="mailbox size (default 100 000)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.messages) + run_opening(args.quick), "TUI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
