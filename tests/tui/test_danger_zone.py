"""The danger zone: the server's deletion preview in a table, then a typed confirmation."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from commune_tui.app import make_app
from commune_tui.screens.danger import DangerZoneScreen
from tests.conftest import Running
from tests.tui.conftest import app_settings
from tests.tui.helpers import settle
from tests.tui.seeding import make_inbox, send, threads_of

pytestmark = pytest.mark.anyio


async def test_inbox_data_is_deleted_only_after_the_typed_phrase(running: Running, tmp_path: Path) -> None:
    key = running.new_key(["read", "write", "data:delete"])
    with running.client(key) as user:
        inbox = make_inbox(user, f"doomed{id(tmp_path) % 100000}")
        send(user, inbox["id"], inbox["address"], "Old newsletter", "Nothing to keep.")
        assert threads_of(user, inbox["id"])
        app = make_app(app_settings(running, key, tmp_path))
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            app.open_danger_zone()
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, DangerZoneScreen)
            screen.query_one("#danger-scope", Select).value = f"inbox:{inbox['id']}"
            await settle(pilot)
            preview = screen.query_one("#danger-preview", DataTable)
            counts = {str(preview.get_row_at(i)[0]): str(preview.get_row_at(i)[1])
                      for i in range(preview.row_count)}
            assert counts.get("messages") == "2"
            field = screen.query_one("#danger-confirm", Input)
            field.value = "delete it"
            await pilot.press("enter")
            await settle(pilot)
            assert app.screen is screen and threads_of(user, inbox["id"])
            field.value = f"delete {inbox['address']}"
            await pilot.press("enter")
            await settle(pilot)
            assert not isinstance(app.screen, DangerZoneScreen)
        remaining = user.get("/v1/threads", params={"inbox_id": inbox["id"]})
        assert remaining.status_code == 404 or remaining.json()["data"] == []
