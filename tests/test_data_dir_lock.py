"""One server per data directory: `serve` locks it and publishes its ports, a second `serve` refuses,
and the terminal client connects to the running server instead of starting another on the same database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from backend.datalock import DataDirLock, RunningServer, running_server
from commune_tui.app import make_app
from commune_tui.config import Settings
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def serve_again(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
         "--port", "0", "--smtp-port", "0"],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_second_serve_on_a_locked_data_dir_refuses(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir).start()
    try:
        # The ports are published once every listener and worker has started, as clients wait for them.
        assert running_server(data_dir) == RunningServer(first.proc.pid, first.url, first.smtp_port)
        record = json.loads((data_dir / "server.lock").read_text())
        assert record["base_url"] == first.url and record["smtp_port"] == first.smtp_port
        second = serve_again(data_dir)
        assert second.returncode == 1
        assert "is in use by another Commune server" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and first.url in second.stderr
        assert "Traceback" not in second.stderr
        # The first server is unharmed.
        with first.client() as client:
            assert client.get("/v1/inboxes").status_code == 200
    finally:
        first.stop()


def test_a_crashed_server_leaves_no_lock_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir).start()
    first.signal(signal.SIGKILL)
    first.wait()
    assert (data_dir / "server.lock").exists()
    assert running_server(data_dir) is None
    again = ServerProcess(data_dir).start()
    try:
        assert running_server(data_dir).base_url == again.url
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait() == 0
    assert running_server(data_dir) is None


def test_a_starting_server_never_points_clients_at_the_crashed_ones_ports(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir).start()
    first.signal(signal.SIGKILL)
    first.wait()
    assert first.url in (data_dir / "server.lock").read_text()
    starting = DataDirLock(data_dir)
    starting.acquire()  # a new server between taking the lock and publishing its ports
    try:
        assert running_server(data_dir, wait=0.2) is None
        starting.publish("http://127.0.0.1:1", 2)
        assert running_server(data_dir) == RunningServer(os.getpid(), "http://127.0.0.1:1", 2)
    finally:
        starting.release()


def test_client_connects_to_the_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        app = make_app(Settings(data_dir=data_dir, downloads_dir=tmp_path, state_dir=tmp_path,
                                live_updates=False))
        assert app.embedded is not None and app.embedded.thread is None
        assert app.client.base_url == server.url
        assert app.settings.api_key == server.admin_key
        app.embedded.stop()  # leaves the other process's server running
        with server.client() as client:
            assert client.get("/v1/inboxes").status_code == 200
    finally:
        server.stop()


def test_serve_refuses_while_the_client_runs_its_bundled_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    app = make_app(Settings(data_dir=data_dir, downloads_dir=tmp_path, state_dir=tmp_path,
                            live_updates=False))
    try:
        assert app.embedded is not None and app.embedded.thread is not None
        refused = serve_again(data_dir)
        assert refused.returncode == 1 and "is in use by another Commune server" in refused.stderr
        assert app.embedded.base_url in refused.stderr
        assert httpx.get(f"{app.embedded.base_url}/v1/inboxes",
                         headers={"Authorization": f"Bearer {app.embedded.api_key}"}).status_code == 200
    finally:
        app.embedded.stop()
    assert running_server(data_dir) is None
