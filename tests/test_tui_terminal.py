"""The real `commune-tui` in a pseudo-terminal, reading hostile mail delivered over SMTP: the bytes it
writes to the terminal carry no escape sequence from mail, markup is shown literally, and the client
runs until the user quits it."""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Running
from tests.mailtools import make_inbox
from tests.tui import hostile

ROOT = Path(__file__).resolve().parent.parent
ROWS, COLUMNS = 36, 120
CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
_inboxes = itertools.count()


class Terminal:
    """A program on a pseudo-terminal of a fixed size, and everything it has written so far."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                        start_new_session=True)
        os.close(slave)
        self.output = bytearray()

    def screen_text(self) -> str:
        """What was written, with cursor moves and colours taken out, so runs of text join up."""
        return CSI.sub(b"", bytes(self.output)).decode("utf-8", "replace")

    def _read(self, wait: float) -> bool:
        """Read what is there within `wait` seconds; False once the program closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 1 << 16)
        except OSError:  # EIO: every writer of the terminal is gone
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {what}; the screen so far ends with "
                                     f"{self.screen_text()[-1500:]!r}")
            if not self._read(0.1) and self.process.poll() is not None:
                raise AssertionError(f"the client exited ({self.process.returncode}) before {what}: "
                                     f"{self.screen_text()[-1500:]!r}")

    def wait_for_text(self, text: str, timeout: float = 20) -> None:
        self.wait_for(repr(text), lambda: text in self.screen_text(), timeout)

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for_exit(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0):  # what it wrote while shutting down
            pass
        assert self.process.poll() is not None, "the client did not exit"
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def client_environment(tmp_path: Path) -> dict[str, str]:
    """The user's environment, with the client's own state and config in `tmp_path`. COLUMNS and LINES
    are left out so the client takes its size from the terminal (pytest-xdist workers inherit 80x24)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMMUNE_", "TEXTUAL")) and k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    return env


def test_hostile_mail_never_reaches_the_terminal_as_control(running: Running, tmp_path: Path) -> None:
    key = running.new_key()
    with running.client(key) as api:
        address = make_inbox(api, f"pty{next(_inboxes)}")["address"]
    port = running.server.smtp_port
    for subject in (hostile.ANNOUNCEMENT, hostile.QUIT_CLICK, hostile.STYLED):
        hostile.deliver(port, address, subject)
    hostile.deliver(port, address, hostile.ESCAPES_SUBJECT, hostile.ESCAPES_BODY,
                    sender=hostile.CRAFTED_SENDER, filename=hostile.CRAFTED_FILENAME)

    terminal = Terminal([sys.executable, "-m", "commune_tui", "--server", running.url, "--api-key", key],
                        client_environment(tmp_path), ROOT)
    try:
        terminal.wait_for_text(hostile.ANNOUNCEMENT)
        terminal.wait_for_text("Escapes ")
        terminal.press(b"\r")  # focus starts on the thread list, with the newest highlighted
        terminal.wait_for_text("Start of the hostile body.")
        terminal.wait_for_text(hostile.CRAFTED_SENDER)
        terminal.press(b"G")  # to the end of the body, past the 10 000-character line
        terminal.wait_for_text(hostile.END_MARK)

        hostile.deliver(port, address, hostile.TICKET)  # arrives live, with a new-mail toast
        terminal.wait_for_text("New mail from mallory@outside.test")
        terminal.wait_for_text(hostile.TICKET)
        assert terminal.process.poll() is None, "the client exited"

        screen = terminal.screen_text()
        for literal in (hostile.ANNOUNCEMENT, hostile.QUIT_CLICK, "[b]not bold[/b]", hostile.TICKET,
                        "Escapes ⟨U+202E⟩exe.txt", "CLS><CLS", "BIDI>⟨U+202E⟩<BIDI", "L" * 80):
            assert literal in screen
        terminal.press(b"\x11")  # ctrl+q
        assert terminal.wait_for_exit() == 0
    finally:
        terminal.close()
    written = bytes(terminal.output)
    leaked = [payload for payload in hostile.FORBIDDEN_OUTPUT if payload in written]
    assert leaked == []
