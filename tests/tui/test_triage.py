"""Triage on server labels: read, trash, restore, archive, flag, unread, next unread, bulk, labels;
the mailbox tree's views and counts; what one client does, the API (and every other client) sees."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from textual.widgets import Input

from commune_tui.dialogs.prompt import PromptDialog
from commune_tui.screens.domains import DomainsScreen
from commune_tui.screens.mail import MailScreen
from commune_tui.views import VIEWS
from commune_tui.widgets.mailbox_tree import MailboxTree
from commune_tui.widgets.reader import Reader
from commune_tui.widgets.thread_list import ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import read_thread, select_thread, settle, wait_until

pytestmark = pytest.mark.anyio

VIEW = {view.key: view for view in VIEWS}


def labels(api: httpx.Client, thread_id: str) -> set[str]:
    response = api.get(f"/v1/threads/{thread_id}")
    assert response.status_code == 200, response.text
    return set(response.json()["data"]["labels"])


def subjects(app) -> list[str]:
    return [t.subject for t in app.screen.query_one(ThreadList).ordered()]


def counts(api: httpx.Client, inbox_id: str) -> dict:
    return api.get(f"/v1/inboxes/{inbox_id}").json()["data"]["counts"]


async def open_view(pilot, app, inbox_id: str, key: str) -> None:
    app.screen.query_one(MailboxTree).select_inbox(inbox_id, VIEW[key])
    await settle(pilot)


async def test_reading_a_thread_marks_it_read_for_the_api_and_the_next_client(
        mailbox: Mailbox, tmp_path: Path) -> None:
    thread_id = mailbox.seeded.threads["Lunch on Thursday?"]
    me = mailbox.seeded.me["id"]
    assert "unread" in labels(mailbox.user, thread_id)
    assert counts(mailbox.user, me)["unread_threads"] == 4
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Lunch on Thursday?")
        await wait_until(pilot, lambda: "unread" not in labels(mailbox.user, thread_id))
        assert counts(mailbox.user, me)["unread_threads"] == 3
        await wait_until(pilot, lambda: app.screen.query_one(MailboxTree).counts[me] == "3/4")
        # N on the open thread makes it unread again, on the server too.
        await pilot.press("N")
        await settle(pilot)
        assert "unread" in labels(mailbox.user, thread_id)
    # Another client (here: a scripted one) marks it read; a fresh client start shows it read.
    assert mailbox.user.patch(f"/v1/threads/{thread_id}",
                              json={"remove_labels": ["unread"]}).status_code == 200
    again = mailbox.app(tmp_path / "second")
    async with again.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        thread = next(t for t in again.screen.query_one(ThreadList).ordered() if t.thread_id == thread_id)
        assert not thread.unread


async def test_d_trashes_u_restores_and_the_views_follow(mailbox: Mailbox, tmp_path: Path) -> None:
    thread_id = mailbox.seeded.threads["Server maintenance window"]
    me = mailbox.seeded.me["id"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        select_thread(app, "Server maintenance window")
        await pilot.press("d")
        await settle(pilot)
        assert "trash" in labels(mailbox.user, thread_id)
        assert "Server maintenance window" not in subjects(app)
        # The cursor stays on the list, on the next thread.
        assert app.screen.query_one(ThreadList).current_thread is not None
        await wait_until(pilot, lambda: counts(mailbox.user, me)["trash_threads"] == 1)
        await open_view(pilot, app, me, "trash")
        assert subjects(app) == ["Server maintenance window"]
        tree = app.screen.query_one(MailboxTree)
        await wait_until(pilot, lambda: str(tree.view_nodes[me, "trash"].label) == "Trash 1")
        await pilot.press("u")
        await settle(pilot)
        assert subjects(app) == [] and "trash" not in labels(mailbox.user, thread_id)
        await open_view(pilot, app, me, "inbox")
        assert "Server maintenance window" in subjects(app)


async def test_d_in_the_reader_trashes_the_open_thread(mailbox: Mailbox, tmp_path: Path) -> None:
    thread_id = mailbox.seeded.threads["Lunch on Thursday?"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Lunch on Thursday?")
        assert isinstance(app.focused, Reader)
        await pilot.press("d")
        await settle(pilot)
        assert "trash" in labels(mailbox.user, thread_id)
        assert app.screen.query_one(Reader).thread is None
        assert isinstance(app.focused, ThreadList)


async def test_a_archives_and_F_flags(mailbox: Mailbox, tmp_path: Path) -> None:
    report = mailbox.seeded.threads["Quarterly report draft"]
    lunch = mailbox.seeded.threads["Lunch on Thursday?"]
    me = mailbox.seeded.me["id"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        select_thread(app, "Quarterly report draft")
        await pilot.press("a")
        await settle(pilot)
        assert "archived" in labels(mailbox.user, report)
        assert "Quarterly report draft" not in subjects(app)
        select_thread(app, "Lunch on Thursday?")
        await pilot.press("F")
        await settle(pilot)
        assert "flagged" in labels(mailbox.user, lunch)
        row = app.screen.query_one(ThreadList).get_row(lunch)
        assert "⚑" in str(row[0])
        await open_view(pilot, app, me, "flagged")
        assert subjects(app) == ["Lunch on Thursday?"]
        await pilot.press("F")  # toggles back off; the thread leaves the Flagged view
        await settle(pilot)
        assert "flagged" not in labels(mailbox.user, lunch) and subjects(app) == []
        await open_view(pilot, app, me, "archive")
        assert subjects(app) == ["Quarterly report draft"]
        await open_view(pilot, app, me, "sent")
        assert subjects(app) == []


async def test_the_list_shows_names_and_the_highlighted_senders_address(mailbox: Mailbox,
                                                                        tmp_path: Path) -> None:
    bob = mailbox.seeded.others["bob"]["address"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        select_thread(app, "Lunch on Thursday?")
        await pilot.pause()
        assert threads.get_cell(mailbox.seeded.threads["Lunch on Thursday?"], "from").plain == "Bob Okafor"
        assert str(threads.border_subtitle) == f"Bob Okafor <{bob}>"


async def test_n_jumps_to_the_next_unread_thread(mailbox: Mailbox, tmp_path: Path) -> None:
    for subject in ("Re: Conference talk", "Server maintenance window"):
        mailbox.user.patch(f"/v1/threads/{mailbox.seeded.threads[subject]}",
                           json={"remove_labels": ["unread"]})
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        assert threads.cursor_row == 0 and not threads.current_thread.unread
        await pilot.press("n")
        assert threads.current_thread.subject == "Lunch on Thursday?"
        await pilot.press("n")
        assert threads.current_thread.subject == "Quarterly report draft"
        await pilot.press("n")  # wraps around
        assert threads.current_thread.subject == "Lunch on Thursday?"


async def test_t_selects_several_threads_for_one_bulk_action(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        first, second, third = [t.thread_id for t in threads.ordered()[:3]]
        await pilot.press("t", "t")  # marks the first two, moving down
        assert threads.selected == {first, second}
        assert str(threads.get_row(first)[0]).startswith("*")
        await pilot.press("N")  # all unread: marks both read
        await settle(pilot)
        assert "unread" not in labels(mailbox.user, first) | labels(mailbox.user, second)
        assert "unread" in labels(mailbox.user, third) and threads.selected == set()
        threads.move_cursor(row=0, animate=False)
        await pilot.press("t", "t", "d")
        await settle(pilot)
        assert {"trash"} <= labels(mailbox.user, first) & labels(mailbox.user, second)
        assert threads.row_count == 2


async def test_l_applies_and_removes_a_label(mailbox: Mailbox, tmp_path: Path) -> None:
    thread_id = mailbox.seeded.threads["Lunch on Thursday?"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        select_thread(app, "Lunch on Thursday?")
        await pilot.press("l")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await pilot.press(*"lunch plans", "enter")
        await settle(pilot)
        assert "lunch plans" in labels(mailbox.user, thread_id)
        await pilot.press("l")
        await settle(pilot)
        await pilot.press(*"-lunch plans", "enter")
        await settle(pilot)
        assert "lunch plans" not in labels(mailbox.user, thread_id)


async def test_new_inbox_from_the_domains_screen_appears_at_once(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, DomainsScreen)
        await pilot.press("n")
        await settle(pilot)
        app.screen.query_one("#field-local_part", Input).value = "billing-new"
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)
        tree = app.screen.query_one(MailboxTree)
        await wait_until(pilot, lambda: any(i.local_part == "billing-new" for i in tree.inboxes.values()
                                            if i.id in tree.inbox_nodes))


async def test_d_in_the_trash_deletes_for_good_after_asking(mailbox: Mailbox, tmp_path: Path) -> None:
    thread_id = mailbox.seeded.threads["Re: Conference talk"]
    mailbox.user.patch(f"/v1/threads/{thread_id}", json={"add_labels": ["trash"]})
    me = mailbox.seeded.me["id"]
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await open_view(pilot, app, me, "trash")
        assert subjects(app) == ["Re: Conference talk"]
        app.screen.query_one(ThreadList).focus()
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("n")  # keep it
        await settle(pilot)
        assert mailbox.user.get(f"/v1/threads/{thread_id}").status_code == 200
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert mailbox.user.get(f"/v1/threads/{thread_id}").status_code == 404
        assert subjects(app) == []
