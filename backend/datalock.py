"""One server per data directory: a lock file that also tells clients where the running server
listens.

The server holds an exclusive `flock` on `<data dir>/server.lock` for as long as it runs and writes
its ports into it. A second server on the same directory fails to take the lock and refuses to start;
the terminal client reads the file to connect to the running server instead of starting its own. The
lock goes with the process, so a crashed server leaves no stale lock behind (only a stale file, which no
one trusts because nobody holds its lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "server.lock"


@dataclass(frozen=True)
class RunningServer:
    """What a running server wrote into its lock file."""

    pid: int
    base_url: str
    smtp_port: int | None


class DataDirInUse(Exception):
    """Another server runs on this data directory; the message says which and what to do."""

    def __init__(self, data_dir: Path, running: RunningServer | None) -> None:
        where = f" (pid {running.pid}, {running.base_url})" if running else ""
        super().__init__(f"the data directory {data_dir} is in use by another Commune server"
                         f"{where};"
                         " stop that server or choose another --data-dir")
        self.running = running


def _read(handle: int) -> RunningServer | None:
    os.lseek(handle, 0, os.SEEK_SET)
    try:
        data = json.loads(os.read(handle, 4096) or b"null")
        return RunningServer(int(data["pid"]), str(data["base_url"]), data.get("smtp_port"))
    except (ValueError, TypeError, KeyError):
        return None  # being written, or not ours


class DataDirLock:
    """The exclusive lock of one data directory, held from `acquire` until `release`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._handle: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `DataDirInUse`; the directory must exist."""
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = _read(handle)
            os.close(handle)
            raise DataDirInUse(self.path.parent, running) from None
        # A crashed server's record stays in the file; until `publish` the file must say "starting",
        # not send clients to the dead server's ports.
        os.ftruncate(handle, 0)
        self._handle = handle

    def publish(self, base_url: str, smtp_port: int | None) -> None:
        """Write where this server listens, for clients that find it through the data directory."""
        assert self._handle is not None
        record = json.dumps({"pid": os.getpid(), "base_url": base_url, "smtp_port": smtp_port})
        os.ftruncate(self._handle, 0)
        os.pwrite(self._handle, record.encode() + b"\n", 0)

    def release(self) -> None:
        if self._handle is not None:
            os.ftruncate(self._handle, 0)
            os.close(self._handle)  # closing the last descriptor drops the flock
            self._handle = None


def running_server(data_dir: Path, wait: float = 5.0) -> RunningServer | None:
    """The server that holds `data_dir`'s lock right now, or None when no server runs there.

    A server that holds the lock but has not written its ports yet is still starting: wait up to
    `wait` seconds for them.
    """
    try:
        handle = os.open(data_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                found = _read(handle)
                if found is not None or time.monotonic() > deadline:
                    return found
                time.sleep(0.05)
                continue
            return None  # nobody holds it: the file is left over from a server that is gone
    finally:
        os.close(handle)
