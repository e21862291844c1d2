"""Replies honour Reply-To, reply-all never writes to your own addresses, and the signature is added."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Input

from commune_tui.screens.compose import ComposeScreen
from tests.tui.conftest import Mailbox
from tests.tui.helpers import read_thread, settle, wait_until
from tests.tui.test_keys import deliver

pytestmark = pytest.mark.anyio


async def reply_to(app, pilot, subject: str, key: str) -> ComposeScreen:
    await read_thread(pilot, subject)
    await pilot.press(key)
    await settle(pilot)
    assert isinstance(app.screen, ComposeScreen)
    return app.screen


async def test_reply_goes_to_reply_to_and_reply_all_drops_own_addresses(mailbox: Mailbox,
                                                                        tmp_path: Path) -> None:
    me, support = mailbox.seeded.me["address"], mailbox.seeded.support["address"]
    await asyncio.to_thread(deliver, mailbox.running.server.smtp_port, {
        "From": "Dana <dana@outside.test>", "To": f"{me}, Team <team@outside.test>",
        "Cc": f"{support}, Me Again <{me.upper()}>", "Reply-To": "tickets@outside.test",
        "Subject": "Ticket 7"}, "Please answer the ticket.")
    app = mailbox.app(tmp_path, signature="Ann Example\nACME")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        composer = await reply_to(app, pilot, "Ticket 7", "r")
        assert composer.query_one("#to", Input).value == "tickets@outside.test"
        assert composer.query_one("#cc", Input).value == ""
        body = composer.current_draft().body
        assert body.startswith("\n\n-- \nAnn Example\nACME\n\nOn ")
        assert "> Please answer the ticket." in body
        await pilot.press("escape")  # nothing typed: closes without asking
        await settle(pilot)

        composer = await reply_to(app, pilot, "Ticket 7", "R")
        assert composer.query_one("#to", Input).value == "tickets@outside.test"
        # The sender and the other recipients, never one of the user's own inboxes.
        assert composer.query_one("#cc", Input).value == "dana@outside.test, team@outside.test"


async def test_new_message_gets_the_signature_once(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path, signature="-- \nnot doubled")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert app.screen.current_draft().body == "\n\n-- \nnot doubled"


async def test_recipients_complete_from_contacts(mailbox: Mailbox, tmp_path: Path) -> None:
    alice, bob = mailbox.seeded.others["alice"]["address"], mailbox.seeded.others["bob"]["address"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        to = app.screen.query_one("#to", Input)
        assert app.focused is to
        await pilot.press(*"ali")
        await wait_until(pilot, lambda: to._suggestion == alice)
        await pilot.press("right")  # accepts the suggestion
        assert to.value == alice
        await pilot.press(*", Bob O")  # by name: the address comes with it
        await wait_until(pilot, lambda: to._suggestion == f"{alice}, Bob Okafor <{bob}>")
        await pilot.press("right")
        assert to.value == f"{alice}, Bob Okafor <{bob}>"
        assert composer_problems(app) == []


def composer_problems(app) -> list[str]:
    draft = app.screen.current_draft()
    return [p for p in app.screen.problems(draft) if p.startswith("To")]
