"""Several servers or keys in config.toml, switched with `S`; signature and time zone from the file."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from commune_tui.config import ServerProfile, Settings
from commune_tui.dialogs.servers import ServerPicker
from commune_tui.screens.mail import MailScreen
from commune_tui.widgets.thread_list import ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import settle, wait_until

pytestmark = pytest.mark.anyio


def test_config_file_gives_servers_signature_theme_and_zone(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('signature = "Ann\\nACME"\ntheme = "commune-light"\ntimezone = "Europe/Paris"\n'
                      '[[servers]]\nname = "home"\nurl = "http://127.0.0.1:1"\napi_key = "k1"\n'
                      '[[servers]]\nname = "work"\nurl = "http://127.0.0.1:2"\napi_key = "k2"\n')
    env = {"COMMUNE_TUI_CONFIG": str(config), "COMMUNE_TUI_KEYMAP": str(tmp_path / "none.toml")}
    settings = Settings.from_env(env)
    assert settings.signature == "Ann\nACME" and settings.theme == "commune-light"
    assert settings.timezone == ZoneInfo("Europe/Paris")
    assert settings.servers == [ServerProfile("home", "http://127.0.0.1:1", "k1"),
                                ServerProfile("work", "http://127.0.0.1:2", "k2")]
    # The first configured server is used unless the command line or environment names one.
    assert (settings.base_url, settings.api_key) == ("http://127.0.0.1:1", "k1")
    explicit = Settings.from_env({**env, "COMMUNE_BASE_URL": "http://127.0.0.1:3",
                                  "COMMUNE_API_KEY": "k3"}, theme="commune-dark")
    assert (explicit.base_url, explicit.api_key, explicit.theme) == ("http://127.0.0.1:3", "k3",
                                                                     "commune-dark")
    config.write_text('[[servers]]\nname = "broken"\n')
    with pytest.raises(ValueError, match="servers entry 1 needs a url"):
        Settings.from_env(env)
    config.write_text('timezone = "Mars/Olympus"\n')
    with pytest.raises(ValueError, match="unknown timezone"):
        Settings.from_env(env)


async def test_S_switches_to_another_server_or_key(mailbox: Mailbox, tmp_path: Path) -> None:
    other = Mailbox(mailbox.running)
    try:
        url = mailbox.running.url
        profiles = [ServerProfile("mine", url, mailbox.key), ServerProfile("team", url, other.key)]
        app = mailbox.app(tmp_path, servers=profiles)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            assert app.screen.inbox.id == mailbox.seeded.me["id"]
            await pilot.press("S")
            await pilot.pause()
            assert isinstance(app.screen, ServerPicker)
            await pilot.press("down", "enter")
            await settle(pilot)
            await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                             and app.screen.inbox is not None
                             and app.screen.inbox.id == other.seeded.me["id"])
            assert app.screen.query_one(ThreadList).row_count == 4
            assert {i.id for i in app.inboxes} == {other.seeded.me["id"], other.seeded.support["id"]}
            assert app.sub_title == "team"
    finally:
        other.close()


async def test_S_with_one_server_says_how_to_add_more(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("S")
        await pilot.pause()
        assert isinstance(app.screen, MailScreen)
        assert any("[[servers]]" in str(n.message) for n in app._notifications)
