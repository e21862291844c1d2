"""Strangers' text in the client: mail over real SMTP whose subjects, senders, bodies and file names
try markup and terminal escapes is shown literally, never run, and never crashes the client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Static
from textual.widgets._toast import Toast

from commune_tui.app import CommuneApp
from commune_tui.screens.domains import DomainsScreen
from commune_tui.screens.mail import MailScreen
from commune_tui.widgets.attachments import AttachmentChip
from commune_tui.widgets.reader import MessageTitle, MessageView
from commune_tui.widgets.thread_list import ThreadList
from tests.tui import hostile
from tests.tui.conftest import Mailbox
from tests.tui.helpers import settle, wait_until

pytestmark = pytest.mark.anyio

SEEDED_THREADS = 4


def shown(widget: Widget) -> str:
    """The text a widget shows on screen, line by line."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def unwrapped(text: str) -> str:
    """Text without its white space, to find a phrase wherever a narrow widget wrapped it."""
    return "".join(text.split())


def toast_showing(app: CommuneApp, text: str) -> Toast | None:
    return next((t for t in app.screen.query(Toast) if unwrapped(text) in unwrapped(shown(t))), None)


async def click_on_text(pilot: Pilot, widget: Widget, needle: str) -> None:
    """Click where `needle` is shown inside `widget`, as a user would."""
    for y in range(widget.size.height):
        x = widget.render_line(y).text.find(needle)
        if x >= 0:
            await pilot.click(widget, offset=(x + 1, y))
            await pilot.pause()
            return
    raise AssertionError(f"{needle!r} is not shown in {widget!r}: {shown(widget)!r}")


def subject_cells(threads: ThreadList) -> list[str]:
    return [str(threads.get_cell(t.thread_id, "subject")) for t in threads.ordered()]


async def deliver(mailbox: Mailbox, subject: str, **fields: str) -> None:
    await asyncio.to_thread(hostile.deliver, mailbox.running.server.smtp_port, mailbox.seeded.me["address"],
                            subject, **fields)


async def test_markup_in_new_mail_is_shown_literally_and_never_runs(mailbox: Mailbox, tmp_path: Path) -> None:
    folder = tmp_path / "sender-chosen"
    folder.mkdir()
    screenshot_subject = hostile.screenshot_click(str(folder))
    subjects = [*hostile.MARKUP_SUBJECTS, screenshot_subject]
    app = mailbox.app(tmp_path, live_updates=True)
    app.NOTIFICATION_TIMEOUT = 600  # the toasts stay up until the test has looked at them
    async with app.run_test(size=(160, 60), notifications=True) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count == SEEDED_THREADS)
        threads = app.screen.query_one(ThreadList)
        for subject in subjects:
            await deliver(mailbox, subject)
        await wait_until(pilot, lambda: threads.row_count == SEEDED_THREADS + len(subjects))
        await wait_until(pilot, lambda: all(toast_showing(app, s) for s in subjects))
        assert app.is_running and app.return_code is None
        for subject in subjects:
            assert any(cell.startswith(f"{subject}  Hello.") for cell in subject_cells(threads))

        for subject, words in ((hostile.QUIT_CLICK, "Click me to win"), (screenshot_subject, "Free screenshot")):
            toast = toast_showing(app, subject)
            assert toast is not None
            await click_on_text(pilot, toast, words)
        await settle(pilot)
        assert app.is_running and app.return_code is None
    assert list(folder.iterdir()) == []


async def test_reader_shows_a_hostile_message_literally(mailbox: Mailbox, tmp_path: Path) -> None:
    await deliver(mailbox, hostile.ESCAPES_SUBJECT, body=hostile.ESCAPES_BODY, sender=hostile.CRAFTED_SENDER,
                  filename=hostile.CRAFTED_FILENAME)
    app = mailbox.app(tmp_path)
    app.NOTIFICATION_TIMEOUT = 600
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MailScreen)
                         and app.screen.query_one(ThreadList).row_count == SEEDED_THREADS + 1)
        threads = app.screen.query_one(ThreadList)
        assert threads.ordered()[0].subject == "Escapes ⟨U+202E⟩exe.txt"
        row = " ".join(str(cell) for cell in threads.get_row(threads.ordered()[0].thread_id))
        assert "\x1b" not in row and "\u202e" not in row and "Escapes ⟨U+202E⟩exe.txt" in row
        threads.move_cursor(row=0, animate=False)
        threads.focus()
        await pilot.press("enter")
        await settle(pilot)

        subject = app.screen.query_one(".reader-subject", Static)
        assert "Escapes ⟨U+202E⟩exe.txt" in shown(subject)
        view = app.screen.query_one(MessageView)
        title = view.query_one(MessageTitle)
        assert hostile.CRAFTED_SENDER in shown(title)
        body = str(view.query_one(".message-body", Static).render())
        assert "\x1b" not in body and "\x07" not in body and "\u202e" not in body
        for kept in ("CLS><CLS", "RED><RED", "BEL><BEL", "BIDI>⟨U+202E⟩<BIDI", "passwd-link",
                     hostile.LONG_LINE, hostile.END_MARK):
            assert kept in body
        assert "pwned" not in body and "cHduZWQ" not in body and "file:///etc/passwd" not in body
        chip = view.query_one(AttachmentChip)
        assert hostile.CRAFTED_FILENAME in shown(chip)

        await click_on_text(pilot, title, "boss")
        assert app.is_running and app.return_code is None
        view.collapsed = False
        chip.focus()
        await pilot.press("s")
        await settle(pilot)
        assert toast_showing(app, f"Saved {hostile.CRAFTED_FILENAME} to")
        assert app.is_running and app.return_code is None
    assert (tmp_path / "downloads" / hostile.CRAFTED_FILENAME).read_bytes() == b"minutes\n"


async def test_search_status_and_server_errors_show_typed_text_literally(mailbox: Mailbox,
                                                                         tmp_path: Path) -> None:
    await deliver(mailbox, hostile.TICKET)
    app = mailbox.app(tmp_path)
    app.NOTIFICATION_TIMEOUT = 600
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        app.screen.query_one("#query", Input).value = "[ticket=#4711]"
        await pilot.press("enter")
        await settle(pilot)
        assert [t.subject for t in app.screen.query_one(ThreadList).ordered()] == [hostile.TICKET]
        assert "1 thread match “[ticket=#4711]”" in shown(app.screen.query_one("#search-status", Static))
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, DomainsScreen)
        await pilot.press("a")
        await settle(pilot)
        app.screen.query_one("#field-name", Input).value = "[ANN] v2"
        await pilot.press("enter")
        await settle(pilot)
        assert toast_showing(app, "Could not add [ANN] v2:")
        assert app.is_running and app.return_code is None
