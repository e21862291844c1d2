"""`commune-server serve` as a real child process on free loopback ports, for signal and crash tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.postgres import database_url

HTTP_RE = re.compile(r"HTTP listening on http://127\.0\.0\.1:(\d+)")
SMTP_RE = re.compile(r"SMTP listening on 127\.0\.0\.1:(\d+)")


class ServerProcess:
    """One server process; `.port`, `.smtp_port`, `.admin_key` once `start()` returns. On `engine`
    "postgresql" it keeps its data in the test cluster's database for `data_dir` (`--database`)."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 launcher: Sequence[str] = (), engine: str = "sqlite") -> None:
        self.data_dir = data_dir
        url = database_url(engine, data_dir)
        self.args = (*args, "--database", url) if url else args
        self.launcher = list(launcher)
        """A command that runs the server's argv (e.g. in its own namespaces), `exec`ing it in place."""
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.port = 0
        self.smtp_port = 0

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log = []
        self.port = self.smtp_port = 0
        self.proc = subprocess.Popen(
            [*self.launcher, sys.executable, "-m", "backend", "serve", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
             "--port", "0", "--smtp-port", "0", "--rate-limit", "0", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent, env=self.env,
        )
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (self.port and self.smtp_port):
            if self.proc.poll() is not None:
                raise RuntimeError("server exited during start:\n" + "".join(self.log))
            time.sleep(0.05)
        if not (self.port and self.smtp_port):
            raise RuntimeError("server did not start listening:\n" + "".join(self.log))
        return self

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if found := HTTP_RE.search(line):
                self.port = int(found.group(1))
            if found := SMTP_RE.search(line):
                self.smtp_port = int(found.group(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def client(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.admin_key}"},
                            timeout=timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the process if it still runs (test cleanup)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def relaying_server(folder: Path, dns_server, sink_port: int, partner: str, engine: str = "sqlite") -> ServerProcess:
    """A server process (not started) relaying outbound mail to a local sink, with `partner` given an
    MX in the test DNS server and delivery retries fast enough for a test."""
    dns_server.publish(partner, "MX", f"10 mx.{partner}.")
    return ServerProcess(folder, "--dns-servers", dns_server.address, "--relay", f"127.0.0.1:{sink_port}",
                         env={"COMMUNE_DELIVERY_BACKOFF": "0.1", "COMMUNE_DELIVERY_BACKOFF_MAX": "0.2",
                              # Restarted under its name, the node takes back at once what it had leased.
                              "COMMUNE_NODE_ID": f"node-{folder.name}"}, engine=engine)
