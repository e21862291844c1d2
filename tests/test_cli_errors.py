"""`commune-server` refuses bad starts cleanly: one line naming the fix, a non-zero exit, nothing created."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def commune_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as occupier:
        yield occupier.getsockname()[1]


@pytest.mark.parametrize("flag", ["--port", "--smtp-port"])
def test_serve_on_a_port_in_use_names_it_and_creates_nothing(tmp_path, taken_port, flag) -> None:
    data_dir = tmp_path / "new"
    ports = {"--port": "0", "--smtp-port": "0", flag: str(taken_port)}
    result = commune_server("serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                            *[part for pair in ports.items() for part in pair])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"commune-server: port {taken_port} is in use; choose another with {flag}"]
    assert not data_dir.exists()


@pytest.mark.parametrize("command", [["list"], ["create", "--scopes", "read"], ["revoke", "key_123"]])
def test_keys_on_a_missing_data_dir_fail_without_creating_it(tmp_path, command) -> None:
    missing = tmp_path / "nonexistent" / "x"
    result = commune_server("keys", *command, "--data-dir", str(missing))
    assert result.returncode != 0
    assert str(missing) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_keys_on_a_data_dir_without_a_database_make_no_store_and_no_admin_key(tmp_path) -> None:
    result = commune_server("keys", "create", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "no Commune data" in result.stderr and "comm_" not in result.stdout
    assert list(tmp_path.iterdir()) == []
