"""The reader marks mail whose sender is not authenticated: a forged From over real SMTP (DMARC fail
against records on the test DNS server) gets a warning line and a mark on its header line; signed mail
from a permitted address gets neither."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widget import Widget
from textual.widgets import Static

from commune_tui.screens.mail import MailScreen
from commune_tui.widgets.reader import MessageTitle, MessageView
from commune_tui.widgets.thread_list import ThreadList
from tests.test_mail_auth import domain, message, publish_sender, send, signed
from tests.tui.conftest import Mailbox
from tests.tui.helpers import settle, wait_until

pytestmark = pytest.mark.anyio

SEEDED_THREADS = 4


def shown(widget: Widget) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def open_thread(pilot, threads: ThreadList, subject: str) -> MessageView:
    [row] = [i for i, t in enumerate(threads.ordered()) if t.subject == subject]
    threads.move_cursor(row=row, animate=False)
    threads.focus()
    await pilot.press("enter")
    await settle(pilot)
    await wait_until(pilot, lambda: subject in shown(pilot.app.screen.query_one(".reader-subject", Static)))
    return pilot.app.screen.query_one(MessageView)


async def test_reader_marks_a_forged_sender_and_not_a_signed_one(
        mailbox: Mailbox, dns_server, tmp_path: Path) -> None:
    victim, attacker, friend = domain("tui-ceo"), domain("tui-spoof"), domain("tui-friend")
    publish_sender(dns_server, victim, spf="v=spf1 -all")
    publish_sender(dns_server, attacker, dmarc=None)
    key = publish_sender(dns_server, friend)
    me = mailbox.seeded.me["address"]
    running = mailbox.running
    forged = message(f"CEO <ceo@{victim}>", me, "Wire the money")
    honest = signed(message(f"pal@{friend}", me, "Lunch plans"), friend, key)
    assert (await asyncio.to_thread(send, running, f"x@{attacker}", [me], forged)).startswith("250 ")
    assert (await asyncio.to_thread(send, running, f"pal@{friend}", [me], honest)).startswith("250 ")

    app = mailbox.app(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count == SEEDED_THREADS + 2)
        threads = app.screen.query_one(ThreadList)

        view = await open_thread(pilot, threads, "Wire the money")
        warning = " ".join(shown(view.query_one(".auth-warning", Static)).split())
        assert f"⚠ Sender FAILED authentication: DMARC fail for {victim} (SPF pass, DKIM none)" in warning
        assert "may be forged" in warning
        title = shown(view.query_one(MessageTitle))
        assert "⚠ unverified" in title and f"ceo@{victim}" in title

        view = await open_thread(pilot, threads, "Lunch plans")
        assert not view.query(".auth-warning")
        assert "unverified" not in shown(view.query_one(MessageTitle))
        assert f"pal@{friend}" in shown(view.query_one(MessageTitle))
