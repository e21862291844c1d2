"""Dates in the local time zone (`TZ`): today's mail as a time, older mail as a date, zone named in the reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from commune_tui.formatting import parse_time
from commune_tui.widgets.reader import MessageView
from commune_tui.widgets.thread_list import ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import read_thread, settle

pytestmark = pytest.mark.anyio


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield ZoneInfo("Asia/Tokyo")
    monkeypatch.undo()
    time.tzset()


def date_cells(threads: ThreadList) -> dict[str, str]:
    return {t.subject: threads.get_cell(t.thread_id, "date").text.plain for t in threads.ordered()}


def local_dates(threads: ThreadList, zone: ZoneInfo, fmt: str) -> dict[str, str]:
    return {t.subject: parse_time(t.last_message_at).astimezone(zone).strftime(fmt)
            for t in threads.ordered()}


async def test_list_and_reader_use_TZ(mailbox: Mailbox, tmp_path: Path, tokyo: ZoneInfo) -> None:
    real_now = datetime.now().astimezone()
    app = mailbox.app(tmp_path, clock=lambda: real_now, timezone=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        local = parse_time(threads.ordered()[-1].last_message_at).astimezone(tokyo)
        if local.date() == real_now.astimezone(tokyo).date():  # not just past midnight in Tokyo
            assert date_cells(threads) == local_dates(threads, tokyo, "%H:%M")
        await read_thread(pilot, "Lunch on Thursday?")
        header = str(app.screen.query(MessageView).last().query_one(".message-headers").render())
        arrived = parse_time(app.screen.query(MessageView).last().message.created_at).astimezone(tokyo)
        assert f"Date: {arrived.strftime('%a, %d %b %Y %H:%M')} JST" in header

    later = real_now + timedelta(days=3)
    again = mailbox.app(tmp_path, clock=lambda: later, timezone=None)
    async with again.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = again.screen.query_one(ThreadList)
        fmt = "%b %d" if local.year == later.year else "%Y-%m-%d"
        assert date_cells(threads) == local_dates(threads, tokyo, fmt)
