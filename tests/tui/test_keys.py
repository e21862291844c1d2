"""Keys of mutt and aerc users: back/quit, message moves, paging, headers, raw, pipe, links, help."""

from __future__ import annotations

import asyncio
import smtplib
import stat
from email.message import EmailMessage
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static
from textual.widgets._footer import FooterKey

from commune_tui.dialogs.keys import KeysDialog
from commune_tui.dialogs.links import LinksDialog
from commune_tui.dialogs.prompt import PromptDialog
from commune_tui.dialogs.text_view import TextViewDialog
from commune_tui.screens.compose import ComposeScreen
from commune_tui.screens.mail import MailScreen
from commune_tui.widgets.reader import MessageView, Reader
from commune_tui.widgets.thread_list import ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import read_thread, select_thread, settle, wait_until

pytestmark = pytest.mark.anyio



def shown(widget: Static) -> str:
    return str(widget.render())


def deliver(port: int, headers: dict[str, str], body: str, html: str | None = None) -> None:
    message = EmailMessage()
    for name, value in headers.items():
        message[name] = value
    message.set_content(body)
    if html is not None:
        message.set_content(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


def long_thread(mailbox: Mailbox, count: int) -> str:
    """A thread of `count` messages between Bob and the user; its subject."""
    bob, me = mailbox.seeded.others["bob"], mailbox.seeded.me
    thread_id = mailbox.seeded.threads["Lunch on Thursday?"]
    for n in range(2, count + 1):
        body = f"Message number {n}.\n" + "\n".join(f"line {i} of message {n}" for i in range(40))
        response = mailbox.user.post("/v1/messages/send", json={
            "inboxId": me["id"], "to": [bob["address"]], "subject": "Re: Lunch on Thursday?",
            "text": body, "thread_id": thread_id})
        assert response.status_code == 200, response.text
    return "Lunch on Thursday?"


async def test_q_and_escape_go_back_one_level_then_q_quits(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        # Focus starts on the thread list with the newest thread highlighted, so enter opens it.
        assert app.focused is threads and threads.cursor_row == 0
        newest = threads.ordered()[0]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.focused, Reader) and app.focused.thread.thread_id == newest.thread_id
        await pilot.press("q")
        assert app.focused is threads and app.is_running
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("escape")
        assert app.focused is threads
        await pilot.press("escape")  # escape never quits
        assert app.is_running and isinstance(app.screen, MailScreen)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


async def test_q_asks_before_losing_an_unsaved_draft(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        composer = app.screen
        assert isinstance(composer, ComposeScreen) and not composer.modified
        await pilot.press(*"someone@example.com")
        assert composer.modified
        app.request_quit()
        await pilot.pause()
        assert app.is_running and "draft is not saved" in shown(app.screen.query_one(".dialog-title"))
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is composer
        await pilot.press("escape")  # the composer asks too before discarding
        await pilot.pause()
        assert "Discard" in shown(app.screen.query_one(".dialog-title"))
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


async def test_J_K_move_between_messages_and_reply_acts_on_the_current_one(
        mailbox: Mailbox, tmp_path: Path) -> None:
    subject = long_thread(mailbox, 4)
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, subject)
        reader = app.screen.query_one(Reader)
        assert reader.current == 3
        await pilot.press("J")
        assert reader.current == 3  # the last one: stays, with a notice
        await pilot.press("K", "K", "K")
        await pilot.pause()
        views = list(reader.query(MessageView))
        assert reader.current == 0 and not views[0].collapsed and views[0].has_class("current")
        assert "Dock Street" in shown(views[0].query_one(".message-body"))
        await pilot.press("J")
        await pilot.pause()
        assert reader.current == 1 and not views[1].collapsed
        await pilot.press("K")
        await pilot.press("r")
        await settle(pilot)
        composer = app.screen
        assert isinstance(composer, ComposeScreen)
        # The first message (Bob's) is the one answered, not the newest (the user's own).
        assert composer.query_one("#to", Input).value == mailbox.seeded.others["bob"]["address"]
        assert "> Are you free for lunch" in composer.current_draft().body


async def test_enter_and_a_click_unfold_a_folded_message_and_enter_folds_it_again(
        mailbox: Mailbox, tmp_path: Path) -> None:
    subject = long_thread(mailbox, 3)
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, subject)
        first, second, last = app.screen.query_one(Reader).query(MessageView)
        # A folded message is one widget, its header line, until it is first unfolded.
        assert first.collapsed and second.collapsed and not first.children and not last.collapsed
        assert str(first.render()).startswith("▶ Bob Okafor <bob-")
        await pilot.press("tab")
        assert app.focused is first
        await pilot.press("enter")
        await pilot.pause()
        assert not first.collapsed and app.focused is first.title
        assert "▼ " in shown(first.title) and "Dock Street" in shown(first.query_one(".message-body"))
        await pilot.press("enter")  # on the title now: folds it, body hidden, title kept
        await pilot.pause()
        assert first.collapsed and not first.query_one(".message-body").display
        assert "▶ " in shown(first.title) and app.focused is first.title
        await pilot.click(second)
        await pilot.pause()
        assert not second.collapsed and "Message number 2" in shown(second.query_one(".message-body"))
        await pilot.click(second.query_one(".message-body"))  # a click in the body folds nothing
        await pilot.pause()
        assert not second.collapsed
        await pilot.press("question_mark")
        await pilot.pause()
        assert ("enter", "Fold/unfold") in dict(app.screen.groups)["Message"]


async def test_the_footer_follows_focus_between_list_and_reader(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)

        def footer() -> set[str]:
            return {key.description for key in app.screen.query(FooterKey)}

        assert "Trash" in footer() and "Save" not in footer()
        await read_thread(pilot, "Lunch on Thursday?")
        assert isinstance(app.focused, Reader) and {"Save", "Open"} <= footer()
        assert "Trash" not in footer()
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.focused, ThreadList) and "Trash" in footer() and "Save" not in footer()


async def test_space_pages_down_in_the_reader(mailbox: Mailbox, tmp_path: Path) -> None:
    subject = long_thread(mailbox, 2)
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, subject)
        reader = app.screen.query_one(Reader)
        assert reader.scroll_y == 0 and reader.max_scroll_y > reader.size.height
        await pilot.press("space")
        await pilot.pause()
        assert reader.scroll_y >= reader.size.height - 2


async def test_H_shows_full_headers_and_V_the_message_as_the_api_has_it(
        mailbox: Mailbox, tmp_path: Path) -> None:
    me = mailbox.seeded.me["address"]
    await asyncio.to_thread(deliver, mailbox.running.server.smtp_port, {
        "From": "Zoë Ångström <zoe@outside.test>", "To": me, "Subject": "Headers please",
        "Reply-To": "replies@outside.test", "Date": "Fri, 13 Mar 2026 09:30:00 +0100",
        "Message-ID": "<headers-1@outside.test>"}, "Body.")
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        select_thread(app, "Headers please")
        await pilot.press("H")  # from the thread list: acts on the highlighted thread
        await settle(pilot)
        assert isinstance(app.screen, TextViewDialog)
        text = shown(app.screen.query_one("#text-view-text"))
        assert "From: Zoë Ångström <zoe@outside.test>" in text
        assert "Reply-To: replies@outside.test" in text
        assert f"To: {me}" in text and "Message-ID: <headers-1@outside.test>" in text
        await pilot.press("q")
        assert isinstance(app.screen, MailScreen)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("V")
        await settle(pilot)
        raw = shown(app.screen.query_one("#text-view-text"))
        assert '"reply_to": "replies@outside.test"' in raw and '"message_id"' in raw
        await pilot.press("escape")
        assert isinstance(app.screen, MailScreen)


async def test_pipe_sends_the_message_to_a_shell_command(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Lunch on Thursday?")
        await pilot.press("|")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await pilot.press(*"grep -c Dock; exit 3", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewDialog))
        assert shown(app.screen.query_one(".dialog-title")) == "| grep -c Dock; exit 3 (exit status 3)"
        assert shown(app.screen.query_one("#text-view-text")).strip() == "1"


async def test_L_lists_links_and_enter_opens_one_in_BROWSER(mailbox: Mailbox, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BROWSER", str(browser))
    me = mailbox.seeded.me["address"]
    html = ('<p>Read <a href="https://docs.test/start">the guide</a> and'
            ' <a href="https://status.test/">status</a>.</p>')
    await asyncio.to_thread(deliver, mailbox.running.server.smtp_port, {
        "From": "news@outside.test", "To": me, "Subject": "Links inside"}, "", html)
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Links inside")
        body = shown(app.screen.query(".message-body").last())
        assert "the guide [1]" in body and "[2] https://status.test/" in body
        await pilot.press("L")
        await settle(pilot)
        assert isinstance(app.screen, LinksDialog)
        assert app.screen.query_one(OptionList).option_count == 2
        await pilot.press("j", "enter")
        await settle(pilot)
        await wait_until(pilot, lambda: opened.exists())
        assert isinstance(app.screen, MailScreen)
    assert opened.read_text() == "https://status.test/\n"


async def test_question_mark_lists_every_key_of_the_screen_grouped(mailbox: Mailbox,
                                                                   tmp_path: Path) -> None:
    app = mailbox.app(tmp_path, keymap={"threads.reply": "ctrl+r"})
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, KeysDialog)
        groups = dict(app.screen.groups)
        assert {"Main screen", "Thread list", "Reader", "Mailboxes", "Everywhere"} <= set(groups)
        # Keys of widgets that are not focused are listed too, and remaps show the new key.
        assert ("J", "Next msg") in groups["Reader"] and ("|", "Pipe") in groups["Reader"]
        assert ("ctrl+r", "Reply") in groups["Thread list"]
        assert ("S", "Switch server") in groups["Everywhere"]
        assert ("q", "Back") in groups["Main screen"] and ("ctrl+d", "Domains") in groups["Main screen"]
        await pilot.press("escape")
        assert isinstance(app.screen, MailScreen)



async def test_a_slow_server_shows_a_spinner_and_leaves_the_focus_where_it_was(
        mailbox: Mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = mailbox.app(tmp_path)
    fast = app.client.thread_messages

    async def slow(thread_id: str):
        await asyncio.sleep(0.5)
        return await fast(thread_id)

    monkeypatch.setattr(app.client, "thread_messages", slow)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        reader = app.screen.query_one(Reader)
        await wait_until(pilot, lambda: reader.loading)
        await settle(pilot)
        assert not reader.loading and app.focused is reader and reader.thread is not None


async def test_a_spinner_tick_that_comes_too_late_shows_nothing(
        mailbox: Mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from commune_tui.widgets.spinner import spinner_if_slow

    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        reader = app.screen.query_one(Reader)
        ticks = []
        real_set_timer = reader.set_timer

        def set_timer(delay, callback):  # the tick is taken out, to come after the wait ended
            ticks.append(callback)
            return real_set_timer(3600, lambda: None)

        monkeypatch.setattr(reader, "set_timer", set_timer)
        with spinner_if_slow(reader):
            pass
        ticks[0]()  # a tick already queued when the wait ended
        await pilot.pause()
        assert not reader.loading
