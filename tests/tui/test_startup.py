"""Start-up: the bundled server on first run, and clear screens for an unreachable server or a bad key."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from textual.widgets import Static

from commune_tui.app import make_app
from commune_tui.config import Settings
from commune_tui.screens.mail import MailScreen
from commune_tui.screens.problem import ProblemScreen
from commune_tui.widgets.mailbox_tree import MailboxTree
from commune_tui.widgets.thread_list import ThreadList
from tests.conftest import Running
from tests.tui.conftest import app_settings
from tests.tui.helpers import settle, wait_until

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def problem_text(app) -> str:
    return " ".join(str(w.render()) for w in app.screen.query(Static))


async def test_unreachable_server_says_what_to_do(running: Running, tmp_path: Path) -> None:
    settings = app_settings(running, "comm_whatever", tmp_path, base_url=f"http://127.0.0.1:{free_port()}")
    app = make_app(settings)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ProblemScreen)
        text = problem_text(app)
        assert "Cannot reach the Commune server" in text
        assert "--server" in text and "commune-server serve" in text


async def test_refused_key_says_what_to_do_and_retry_works(running: Running, tmp_path: Path) -> None:
    app = make_app(app_settings(running, "comm_not_a_real_key", tmp_path))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ProblemScreen)
        assert "refused the API key" in problem_text(app)
        app.client.http.headers["Authorization"] = f"Bearer {running.new_key()}"
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)


async def test_first_run_opens_a_ready_inbox_with_a_welcome_message(tmp_path: Path) -> None:
    def fresh_settings() -> Settings:
        return Settings(data_dir=tmp_path / "commune", downloads_dir=tmp_path, state_dir=tmp_path,
                        live_updates=False)

    previous_umask = os.umask(0o022)
    try:
        app = make_app(fresh_settings())
    finally:
        os.umask(previous_umask)
    assert app.embedded is not None and app.embedded.base_url.startswith("http://127.0.0.1:")
    # Mail, keys and the server's log are the user's alone, even under a permissive umask.
    assert stat.S_IMODE((tmp_path / "commune").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "commune" / "server.log").stat().st_mode) == 0o600
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count > 0)
        screen = app.screen
        assert screen.inbox.address == "me@commune.localhost"
        assert [t.subject for t in screen.query_one(ThreadList).ordered()] == ["Welcome to Commune"]
        assert "me@commune.localhost" in {i.address for i in app.inboxes}
        assert screen.query_one(MailboxTree).inbox_nodes
    assert (tmp_path / "commune" / "admin.key").exists()

    again = make_app(fresh_settings())
    async with again.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: isinstance(again.screen, MailScreen)
                         and again.screen.query_one(ThreadList).row_count > 0)
        assert again.screen.query_one(ThreadList).row_count == 1
