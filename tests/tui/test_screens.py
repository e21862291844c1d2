"""Paging, domains, composer checks, the editor, key remaps, read marks, the palette, polling."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import DataTable, Input, Label, TextArea

from commune_tui import editor
from commune_tui.config import load_keymap
from commune_tui.dialogs.keys import KeysDialog
from commune_tui.screens.compose import ComposeScreen
from commune_tui.screens.domains import DomainsScreen
from commune_tui.screens.mail import MailScreen
from commune_tui.widgets.thread_list import ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import open_composer, settle, wait_until
from tests.tui.seeding import send

pytestmark = pytest.mark.anyio


async def test_thread_list_pages_through_the_cursor_as_you_scroll(mailbox: Mailbox, tmp_path: Path) -> None:
    dmitri = mailbox.seeded.others["dmitri"]
    for n in range(21):
        send(mailbox.others, dmitri["id"], mailbox.seeded.me["address"], f"Note {n:02d}", "…")
    app = mailbox.app(tmp_path, page_size=10)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        assert threads.row_count == 10 and threads.has_more
        threads.focus()
        for _ in range(3):
            await pilot.press("G")
            await settle(pilot)
        assert threads.row_count == 25 and not threads.has_more
        subjects = [t.subject for t in threads.ordered()]
        assert len(set(subjects)) == 25 and subjects[0] == "Note 20"
        assert subjects[-1] == "Quarterly report draft"


async def test_domains_screen_adds_verifies_and_creates_an_inbox(mailbox: Mailbox, dns_server,
                                                                 tmp_path: Path) -> None:
    name = f"shop{id(tmp_path) % 100000}.example"
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, DomainsScreen)
        await pilot.press("a")
        await settle(pilot)
        app.screen.query_one("#field-name", Input).value = name
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert screen.current is not None and screen.current.name == name
        records = screen.query_one("#record-table", DataTable)
        assert records.row_count >= 3
        kinds = {str(records.get_row_at(i)[2]) for i in range(records.row_count)}
        assert {"MX", "TXT"} <= kinds
        for record in screen.current.records:
            if record.type == "MX":
                dns_server.publish(record.name, "MX", f"10 {record.value}.")
            else:
                value = record.value or ""
                dns_server.publish(record.name, "TXT", " ".join(f'"{value[i:i + 200]}"'
                                                                for i in range(0, len(value), 200)))
        await pilot.press("v")
        await settle(pilot)
        statuses = {str(records.get_row_at(i)[0]) for i in range(records.row_count)}
        assert screen.current.status == "verified" and statuses == {"verified"}
        await pilot.press("n")
        await settle(pilot)
        app.screen.query_one("#field-local_part", Input).value = "orders"
        app.screen.query_one("#field-webhook", Input).value = "https://hooks.example/orders"
        app.screen.query_one("#field-local_part", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert screen.query_one("#inbox-table", DataTable).row_count == 1

    inboxes = mailbox.user.get("/v1/inboxes").json()["data"]
    created = next(i for i in inboxes if i["address"] == f"orders@{name}")
    assert created["webhook"]["endpoint"] == "https://hooks.example/orders"


async def test_composer_flags_bad_addresses_and_keeps_a_draft_the_server_refuses(
        mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        composer = await open_composer(pilot)
        await pilot.press(*"bob@", "tab")
        await settle(pilot)
        assert "Not an address: bob@" in str(composer.query_one("#to-error", Label).render())
        composer.query_one("#to", Input).value = "someone@nowhere.invalid"
        composer.query_one("#subject", Input).value = "Kept"
        composer.query_one("#body", TextArea).text = "Draft body"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is composer
        assert composer.query_one("#body", TextArea).text == "Draft body"
        assert any("Not sent" == (n.title or "") for n in app._notifications)


async def test_ctrl_e_edits_the_body_in_the_editor(mailbox: Mailbox, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(editor, "edit_text", lambda app, text: text + "Written in the editor.\n")
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("ctrl+e")
        assert app.screen.query_one("#body", TextArea).text == "Written in the editor.\n"


async def test_polling_picks_up_new_mail_when_there_is_no_event_stream(mailbox: Mailbox,
                                                                      tmp_path: Path) -> None:
    app = mailbox.app(tmp_path, live_updates=True, use_event_stream=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count == 4)
        support = mailbox.seeded.support
        bob = mailbox.seeded.others["bob"]
        send(mailbox.others, bob["id"], support["address"], "For support", "Help!")
        tree = app.screen.query_one("#mailboxes")
        await wait_until(pilot, lambda: support["id"] in tree.new_mail)
        assert app.screen.query_one(ThreadList).row_count == 4
        assert app.live_mode == "poll"


async def test_remapped_key_opens_the_composer(mailbox: Mailbox, tmp_path: Path) -> None:
    keymap = tmp_path / "keymap.toml"
    keymap.write_text('[keys]\n"mail.compose" = "w"\n')
    settings_keymap = load_keymap(keymap)
    app = mailbox.app(tmp_path, keymap=settings_keymap)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)
        await pilot.press("w")
        await settle(pilot)
        assert isinstance(app.screen, ComposeScreen)


async def test_read_threads_stay_read_on_the_next_start(mailbox: Mailbox, tmp_path: Path) -> None:
    subject = "Lunch on Thursday?"
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        tree = app.screen.query_one("#mailboxes")
        assert tree.counts[mailbox.seeded.me["id"]] == "4/4"  # unread/all, counted by the server
        threads = app.screen.query_one(ThreadList)
        threads.move_cursor(row=[t.subject for t in threads.ordered()].index(subject), animate=False)
        threads.focus()
        await pilot.press("enter")
        await settle(pilot)
        await wait_until(pilot, lambda: tree.counts[mailbox.seeded.me["id"]] == "3/4")

    again = mailbox.app(tmp_path)
    async with again.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert again.screen.query_one("#mailboxes").counts[mailbox.seeded.me["id"]] == "3/4"


async def test_help_panel_and_command_palette(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysDialog)
        await pilot.press("question_mark")
        assert isinstance(app.screen, MailScreen)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"domains")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DomainsScreen)
