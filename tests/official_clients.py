"""Drive the official Commune CLI and MCP tools against our server (CONTRACT.md §1)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from typer.testing import CliRunner

# The size of the terminal `run_cli_terminal` plays.
TERMINAL_SIZE = {"COLUMNS": "200", "LINES": "100"}


def cli_app():
    """The official CLI's Typer app, imported as in a terminal of TERMINAL_SIZE.

    Its stdout and stderr Rich consoles are made when its module is imported and keep the width COLUMNS
    gave then. Under pytest-xdist every worker inherits COLUMNS=80 and LINES=24: pytest imports readline
    in the controller and readline exports its default size, which would cut the tables at 80 columns."""
    with mock.patch.dict(os.environ, TERMINAL_SIZE):
        from commune_cli.main import app
    return app


def run_cli(base_url: str, key: str, config_dir: Path, *args: str) -> tuple[int, Any]:
    """Invoke `commune ...` in-process; returns the exit code and the JSON it printed (or the raw text)."""
    env = {"COMMUNE_CONFIG_DIR": str(config_dir), "COMMUNE_BASE_URL": base_url, "COMMUNE_API_KEY": key}
    result = CliRunner().invoke(cli_app(), ["--json", *args], env=env)
    text = result.stdout.strip()
    try:
        return result.exit_code, json.loads(text)
    except ValueError:
        return result.exit_code, text


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class TerminalRunner(CliRunner):
    """A CliRunner whose stdout and stderr report being a terminal, as a person's shell would."""

    @contextlib.contextmanager
    def isolation(self, *args, **kwargs) -> Iterator:
        with super().isolation(*args, **kwargs) as streams:
            sys.stdout.isatty = lambda: True  # type: ignore[method-assign]
            sys.stderr.isatty = lambda: True  # type: ignore[method-assign]
            yield streams


def run_cli_terminal(base_url: str, key: str, config_dir: Path, *args: str) -> tuple[int, str]:
    """Invoke `commune ...` in-process as in a 200-column terminal: the exit code and the text it printed
    (the human tables, not JSON), colours removed."""
    env = {"COMMUNE_CONFIG_DIR": str(config_dir), "COMMUNE_BASE_URL": base_url, "COMMUNE_API_KEY": key,
           **TERMINAL_SIZE}
    result = TerminalRunner().invoke(cli_app(), list(args), env=env)
    return result.exit_code, ANSI.sub("", result.output)


def mcp_tools(monkeypatch, base_url: str, key: str):
    """The MCP server module pointed at our server with `key`; its tools are plain functions."""
    from commune_mcp import server

    monkeypatch.setattr(server, "BASE_URL", base_url)
    monkeypatch.setattr(server, "_api_key_ctx", contextvars.ContextVar("commune_api_key", default=key))
    return server
