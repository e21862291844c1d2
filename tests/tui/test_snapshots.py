"""Snapshots of every screen at 120×36 and the main ones at 80×24, against a dedicated server seeded
with a frozen clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from commune_tui.app import CommuneApp, make_app
from commune_tui.widgets.thread_list import ThreadList
from tests.conftest import Running, start_server
from tests.tui.conftest import FROZEN_NOW, app_settings
from tests.tui.helpers import settle
from tests.tui.seeding import Seeded, seed_mailbox

SIZE = (120, 36)
NARROW = (80, 24)


def frozen_stamps() -> Iterator[str]:
    """Arrival times: every 37 minutes from 07:00 on the frozen day."""
    start = FROZEN_NOW.replace(hour=7) - timedelta(days=1)
    for n in itertools.count():
        yield (start + timedelta(minutes=37 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory: pytest.TempPathFactory,
                  dns_server) -> Iterator[tuple[Running, str, Seeded]]:
    import backend.api.messages as messages_api
    import backend.store.mail as mail_store
    from backend.mail.compose import Outgoing

    running = start_server(tmp_path_factory.mktemp("snapshots"), dns_server)
    stamps, dates = frozen_stamps(), frozen_stamps()
    patch = pytest.MonkeyPatch()
    patch.setattr(mail_store, "now_iso", lambda: next(stamps))
    # The Date header (the reader's date) is frozen too.
    patch.setattr(messages_api, "Outgoing", lambda **fields: Outgoing(
        **fields, date=datetime.fromisoformat(next(dates).replace("Z", "+00:00"))))
    try:
        key = running.new_key()
        with running.client(key) as user, running.client(running.new_key()) as others:
            seeded = seed_mailbox(user, others, "")
    finally:
        patch.undo()
    yield running, key, seeded
    running.stop()


@pytest.fixture
def snapshot_app(seeded_server, tmp_path: Path) -> CommuneApp:
    running, key, seeded = seeded_server
    # Opening a thread reads it on the server: every snapshot starts from the same unread mail.
    with running.client(key) as user:
        for thread_id in seeded.threads.values():
            response = user.patch(f"/v1/threads/{thread_id}", json={"add_labels": ["unread"]})
            assert response.status_code == 200, response.text
    return make_app(app_settings(running, key, tmp_path, cursor_blink=False))


async def opened(pilot: Pilot) -> None:
    await settle(pilot)
    pilot.app.clear_notifications()


async def open_report(pilot: Pilot) -> None:
    await settle(pilot)
    threads = pilot.app.screen.query_one(ThreadList)
    row = next(i for i, t in enumerate(threads.ordered()) if t.subject == "Quarterly report draft")
    threads.move_cursor(row=row, animate=False)
    threads.focus()
    await pilot.press("enter")
    await opened(pilot)


async def reply_to_report(pilot: Pilot) -> None:
    await open_report(pilot)
    await pilot.press("r")
    await opened(pilot)


async def search_kernel(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("slash")
    await settle(pilot)
    pilot.app.screen.query_one("#query", Input).value = "report"
    await pilot.press("enter")
    await opened(pilot)


async def domains(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("ctrl+d")
    await opened(pilot)


class TestMailScreen:
    def test_inbox(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=opened)

    def test_thread_with_attachment(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=open_report)

    def test_light_theme(self, snap_compare, snapshot_app: CommuneApp) -> None:
        snapshot_app.theme = "commune-light"
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=open_report)


async def show_keys(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("question_mark")
    await opened(pilot)


class TestNarrowTerminal:
    """80×24: the sidebar folded away, every column and the footer fitting."""

    def test_inbox(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=NARROW, run_before=opened)

    def test_thread(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=NARROW, run_before=open_report)

    def test_light_theme(self, snap_compare, snapshot_app: CommuneApp) -> None:
        snapshot_app.theme = "commune-light"
        assert snap_compare(snapshot_app, terminal_size=NARROW, run_before=open_report)

    def test_keys(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=NARROW, run_before=show_keys)


class TestOtherScreens:
    def test_keys(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=show_keys)

    def test_reply_composer(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=reply_to_report)

    def test_search_results(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=search_kernel)

    def test_domains(self, snap_compare, snapshot_app: CommuneApp) -> None:
        assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=domains)


class TestProblemScreen:
    def test_unreachable_server(self, snap_compare, seeded_server, tmp_path: Path) -> None:
        running, key, _ = seeded_server
        settings = app_settings(running, key, tmp_path, base_url="http://127.0.0.1:9", cursor_blink=False)
        assert snap_compare(make_app(settings), terminal_size=SIZE, run_before=opened)
