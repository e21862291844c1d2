"""Fixtures for the terminal client: seeded mailboxes on the real server and the app built by `make_app`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commune_tui.app import CommuneApp, make_app
from commune_tui.config import Settings
from tests.conftest import Running
from tests.tui.seeding import Seeded, seed_mailbox

FROZEN_NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_suffixes = itertools.count(1)


def app_settings(running: Running, key: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test app: frozen clock, downloads into tmp_path, no live updates unless asked."""
    values: dict[str, object] = {
        "base_url": running.url, "api_key": key, "data_dir": tmp_path / "data",
        "downloads_dir": tmp_path / "downloads", "state_dir": tmp_path / "state", "keymap": {},
        "live_updates": False, "poll_interval": 0.2,
        "clock": lambda: FROZEN_NOW, "timezone": UTC,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class Mailbox:
    """A seeded user with API clients for them and for their correspondents."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.key = running.new_key()
        self.others_key = running.new_key()
        self.user = running.client(self.key)
        self.others = running.client(self.others_key)
        self.seeded: Seeded = seed_mailbox(self.user, self.others, self.others_key, f"-{next(_suffixes)}")

    def app(self, tmp_path: Path, **overrides: object) -> CommuneApp:
        return make_app(app_settings(self.running, self.key, tmp_path, **overrides))

    def close(self) -> None:
        self.user.close()
        self.others.close()


@pytest.fixture
def mailbox(running: Running) -> Iterator[Mailbox]:
    box = Mailbox(running)
    yield box
    box.close()




@pytest.fixture
def anyio_backend() -> str:
    """The app runs on asyncio; async tests use anyio's pytest plugin (shipped with httpx's anyio)."""
    return "asyncio"
