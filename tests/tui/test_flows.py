"""Flows through the real server: read, reply, compose with an attachment, search, live mail."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, TextArea

from commune_tui.dialogs.send_report import SendReportDialog
from commune_tui.screens.compose import ComposeScreen
from commune_tui.screens.mail import MailScreen
from commune_tui.screens.thread import ThreadScreen
from commune_tui.widgets.reader import MessageView, Reader
from commune_tui.widgets.thread_list import ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import open_composer, read_thread, select_thread, settle, wait_until
from tests.tui.seeding import messages_of, send, threads_of

pytestmark = pytest.mark.anyio



async def test_read_a_thread_and_reply(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)
        assert app.screen.inbox.id == mailbox.seeded.me["id"]
        await read_thread(pilot, "Lunch on Thursday?")
        reader = app.screen.query_one(Reader)
        assert reader.thread.subject == "Lunch on Thursday?"
        assert "Dock Street" in str(reader.query_one(".message-body").render())
        await pilot.press("r")
        await settle(pilot)
        composer = app.screen
        assert isinstance(composer, ComposeScreen)
        assert composer.query_one("#to", Input).value == mailbox.seeded.others["bob"]["address"]
        assert composer.query_one("#subject", Input).value == "Re: Lunch on Thursday?"
        await pilot.press(*"Fine.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)

    thread_id = mailbox.seeded.threads["Lunch on Thursday?"]
    stored = messages_of(mailbox.user, thread_id)
    assert [m["direction"] for m in stored] == ["inbound", "outbound"]
    reply = stored[-1]
    assert reply["content"].startswith("Fine.")
    assert "> Are you free for lunch on Thursday?" in reply["content"]
    bob_threads = threads_of(mailbox.others, mailbox.seeded.others["bob"]["id"])
    assert [(t["message_count"], t["last_direction"]) for t in bob_threads] == [(2, "inbound")]


async def test_compose_with_attachment_reaches_recipient(mailbox: Mailbox, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    document = tmp_path / "minutes.txt"
    document.write_text("Minutes of the planning meeting\n" * 50)
    alice = mailbox.seeded.others["alice"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        composer = await open_composer(pilot)
        composer.query_one("#to", Input).value = alice["address"]
        composer.query_one("#subject", Input).value = "Meeting minutes"
        composer.query_one("#body", TextArea).text = "Minutes attached.\n"
        await pilot.press("ctrl+a")
        await settle(pilot)
        app.screen.query_one("#attach-path", Input).value = str(document)
        await pilot.press("enter")
        await settle(pilot)
        assert [u.state for u in composer.uploads] == ["✓ uploaded"]
        assert composer.uploads[0].attachment.size == document.stat().st_size
        mistake = tmp_path / "wrong-file.txt"
        mistake.write_text("not this one")
        await pilot.press("ctrl+a")
        await settle(pilot)
        app.screen.query_one("#attach-path", Input).value = str(mistake)
        await pilot.press("enter")
        await settle(pilot)
        attachments = composer.query_one("#attachments", OptionList)
        attachments.focus()
        attachments.highlighted = 1
        await pilot.press("delete")
        assert [u.name for u in composer.uploads] == ["minutes.txt"]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)

    received = [t for t in threads_of(mailbox.others, alice["id"]) if t["subject"] == "Meeting minutes"]
    assert len(received) == 1 and received[0]["has_attachments"]
    message = messages_of(mailbox.others, received[0]["thread_id"])[0]
    assert message["direction"] == "inbound"
    meta = mailbox.others.get(f"/v1/attachments/{message['attachments'][0]}").json()["data"]
    assert meta["filename"] == "minutes.txt" and meta["size"] == document.stat().st_size


async def test_forward_carries_the_attachment(mailbox: Mailbox, tmp_path: Path) -> None:
    bob = mailbox.seeded.others["bob"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        select_thread(app, "Quarterly report draft")
        await pilot.press("f")
        await settle(pilot)
        composer = app.screen
        assert isinstance(composer, ComposeScreen)
        assert composer.query_one("#subject", Input).value == "Fwd: Quarterly report draft"
        assert [(u.name, u.state) for u in composer.uploads] == [("report-q1.pdf", "✓ forwarded")]
        assert "---------- Forwarded message ----------" in composer.query_one("#body", TextArea).text
        composer.query_one("#to", Input).value = bob["address"]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)
    received = [t for t in threads_of(mailbox.others, bob["id"]) if t["subject"].startswith("Fwd:")]
    assert len(received) == 1 and received[0]["has_attachments"]


async def test_reader_folds_earlier_messages_and_shows_html_as_text(mailbox: Mailbox, tmp_path: Path) -> None:
    carol = mailbox.seeded.others["carol"]
    thread_id = mailbox.seeded.threads["Server maintenance window"]
    sent = mailbox.user.post("/v1/messages/send", json={
        "inboxId": mailbox.seeded.me["id"], "to": [carol["address"]], "thread_id": thread_id,
        "subject": "Re: Server maintenance window",
        "html": "<p>Thanks for the <b>warning</b>.</p><ul><li>queue</li><li>retry</li></ul>"})
    assert sent.status_code == 200, sent.text
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Server maintenance window")
        views = list(app.screen.query(MessageView))
        assert [v.collapsed for v in views] == [True, False]
        body = str(views[-1].query_one(".message-body").render())
        assert "Thanks for the warning." in body and "retry" in body and "<" not in body


async def test_save_attachment_writes_the_file(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Quarterly report draft")
        await pilot.press("s")
        await settle(pilot)
    saved = tmp_path / "downloads" / "report-q1.pdf"
    assert saved.read_bytes() == b"%PDF-1.4 quarterly report " * 400


async def test_send_report_names_rejected_recipients(mailbox: Mailbox, tmp_path: Path) -> None:
    alice = mailbox.seeded.others["alice"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        composer = await open_composer(pilot)
        composer.query_one("#to", Input).value = f"{alice['address']}, nobody@nowhere.invalid"
        composer.query_one("#subject", Input).value = "Two recipients"
        composer.query_one("#body", TextArea).text = "One of you exists."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SendReportDialog)
        report = str(app.screen.query_one("#send-report").render())
        assert "nobody@nowhere.invalid" in report and "not sent" in report
    assert any(t["subject"] == "Two recipients" for t in threads_of(mailbox.others, alice["id"]))


async def test_search_opens_results_like_any_thread(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        app.screen.query_one("#query", Input).value = "kernel"
        await pilot.press("enter")
        await settle(pilot)
        results = app.screen.query_one(ThreadList)
        assert [t.subject for t in results.ordered()] == ["Server maintenance window"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ThreadScreen)
        views = app.screen.query(MessageView)
        assert len(views) == 1 and "kernel update" in str(views.first().query_one(".message-body").render())


async def test_new_mail_shows_up_live_without_moving_the_cursor(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path, live_updates=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count == 4)
        threads = app.screen.query_one(ThreadList)
        select_thread(app, "Lunch on Thursday?")
        carol = mailbox.seeded.others["carol"]
        send(mailbox.others, carol["id"], mailbox.seeded.me["address"], "Fresh news", "Just arrived.")
        await wait_until(pilot, lambda: threads.row_count == 5)
        assert threads.ordered()[0].subject == "Fresh news"
        assert threads.current_thread.subject == "Lunch on Thursday?"
        assert any(carol["address"] in (n.title or "") for n in app._notifications)
        assert app.live_mode == "stream"


def deliver_over_smtp(port: int, sender: str, recipient: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = f"Erin Walsh <{sender}>", recipient, subject
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


async def test_mail_sent_in_over_smtp_shows_up_live(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path, live_updates=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count == 4)
        threads = app.screen.query_one(ThreadList)
        select_thread(app, "Server maintenance window")
        await asyncio.to_thread(deliver_over_smtp, mailbox.running.server.smtp_port, "erin@outside.test",
                                mailbox.seeded.me["address"], "Invoice 2291", "Please find the invoice.")
        await wait_until(pilot, lambda: threads.row_count == 5)
        newest = threads.ordered()[0]
        assert (newest.subject, newest.last_sender) == ("Invoice 2291", "erin@outside.test")
        assert threads.current_thread.subject == "Server maintenance window"
        await wait_until(pilot, lambda: any("erin@outside.test" in (n.title or "") for n in app._notifications))
