"""The Outbox screen and the composer's send later / postpone, driven with the Textual pilot against
the real server: an agent's key submits mail that an inbox holds for approval, a person's key (with
`approvals:write`) approves, edits, rejects or cancels it in the terminal, and the tests check what the
server stored and what reached the recipient."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TextArea

from commune_tui import editor
from commune_tui.app import CommuneApp, make_app
from commune_tui.dialogs.confirm import ConfirmDialog
from commune_tui.dialogs.prompt import PromptDialog
from commune_tui.dialogs.send_later import SendLaterDialog
from commune_tui.models import Draft
from commune_tui.screens.approval_edit import (
    ApprovalComposeScreen,
    approval_edits,
    message_text,
    parse_message_text,
)
from commune_tui.screens.compose import ComposeScreen
from commune_tui.screens.outbox import OutboxScreen
from commune_tui.widgets.mailbox_tree import MailboxTree
from tests.conftest import Running
from tests.tui import hostile
from tests.tui.conftest import app_settings
from tests.tui.helpers import open_composer, settle, wait_until
from tests.tui.seeding import seed_mailbox, threads_of

pytestmark = pytest.mark.anyio
_suffixes = itertools.count(1)


def ok(response: httpx.Response) -> dict:
    assert response.is_success, response.text
    return response.json()


class Outboxes:
    """A person (read, write, approvals:write) and an agent (read, write) in one organisation; the
    `support` inbox holds every send for approval; correspondents live in another organisation."""

    def __init__(self, running: Running) -> None:
        self.running = running
        org = f"outbox-org-{next(_suffixes)}"
        self.key = running.new_key(["read", "write", "approvals:write"], org=org)
        self.agent_key = running.new_key(["read", "write"], org=org)
        others_key = running.new_key()
        self.user = running.client(self.key)
        self.agent = running.client(self.agent_key)
        self.others = running.client(others_key)
        self.seeded = seed_mailbox(self.user, self.others, others_key, f"-ob{next(_suffixes)}")
        self.support = self.seeded.support
        self.alice = self.seeded.others["alice"]
        ok(self.user.patch(f"/v1/inboxes/{self.support['id']}", json={"approval": "all"}))

    def app(self, tmp_path: Path, **overrides: object) -> CommuneApp:
        values: dict[str, object] = {"cursor_blink": False, "clock": lambda: datetime.now(UTC)}
        values.update(overrides)
        return make_app(app_settings(self.running, self.key, tmp_path, **values))

    def agent_sends(self, subject: str, text: str = "Hello from the agent.", **extra: object) -> dict:
        """The agent submits a message from `support` to Alice; the inbox holds it."""
        response = self.agent.post("/v1/messages/send", json={
            "inboxId": self.support["id"], "to": [self.alice["address"]], "subject": subject, "text": text,
            **extra})
        assert response.status_code == 202, response.text
        assert response.json()["data"]["status"] == "pending_approval"
        return response.json()["data"]

    def alice_subjects(self) -> list[str]:
        return [t["subject"] for t in threads_of(self.others, self.alice["id"])]

    def message(self, message_id: str) -> dict:
        return ok(self.user.get(f"/v1/messages/{message_id}"))["data"]

    def status(self, message_id: str) -> str:
        return self.message(message_id)["metadata"]["delivery_status"]

    def close(self) -> None:
        for client in (self.user, self.agent, self.others):
            client.close()


@pytest.fixture
def boxes(running: Running) -> Iterator[Outboxes]:
    found = Outboxes(running)
    yield found
    found.close()


async def open_outbox(pilot: Pilot, everywhere: bool = True) -> OutboxScreen:
    """`O` on the mail screen (this inbox), and `O` again for every inbox."""
    await settle(pilot)
    await pilot.press("O")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, OutboxScreen)
    if everywhere:
        await pilot.press("O")
        await settle(pilot)
        assert screen.inbox is None
    return screen


def fill(composer: ComposeScreen, to: str, subject: str, body: str) -> None:
    composer.query_one("#to", Input).value = to
    composer.query_one("#subject", Input).value = subject
    composer.query_one("#body", TextArea).text = body


def review(screen: OutboxScreen) -> str:
    return str(screen.query_one("#review-text", Static).render())


def rows(screen: OutboxScreen, tab: str) -> list[str]:
    table = screen.query_one(f"#{tab}-table", DataTable)
    return [" | ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


async def test_approve_a_held_message(boxes: Outboxes, tmp_path: Path) -> None:
    held = boxes.agent_sends("Refund for order 4521", "We will refund the full amount today.")
    assert "Refund for order 4521" not in boxes.alice_subjects()
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        assert screen.sub_title == "Outbox · all inboxes"
        assert len(rows(screen, "approvals")) == 1
        assert "Refund for order 4521" in rows(screen, "approvals")[0]
        await settle(pilot)
        shown = review(screen)
        for expected in ("AWAITING APPROVAL", boxes.support["address"], boxes.alice["address"],
                         "Refund for order 4521", "every recipient passed validation",
                         "We will refund the full amount today.", "by key key_",
                         "(in 2d 23h): rejected as expired unless decided"):
            assert expected in shown, expected
        await pilot.press("A")
        await settle(pilot)
        assert rows(screen, "approvals") == []
    assert ok(boxes.user.get("/v1/approvals"))["data"] == []
    assert boxes.status(held["id"]) in ("approved", "sent", "delivered")
    assert boxes.alice_subjects().count("Refund for order 4521") == 1


async def test_edit_then_approve_sends_the_edited_message(boxes: Outboxes, tmp_path: Path) -> None:
    held = boxes.agent_sends("Your refund", "Refund of 500 EUR approved.")
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        await pilot.press("E")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, ApprovalComposeScreen)
        assert editor.query_one("#to", Input).value == boxes.alice["address"]
        editor.query_one("#subject", Input).value = "Your refund of 50 EUR"
        editor.query_one("#body", TextArea).text = "Refund of 50 EUR approved."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert rows(screen, "approvals") == []
        assert [n.title for n in app._notifications] == ["Approved, on its way"]
    assert boxes.alice_subjects().count("Your refund of 50 EUR") == 1
    assert "Your refund" not in boxes.alice_subjects()
    thread = next(t for t in threads_of(boxes.others, boxes.alice["id"])
                  if t["subject"] == "Your refund of 50 EUR")
    received = ok(boxes.others.get(f"/v1/threads/{thread['thread_id']}/messages"))["data"]
    assert [m["content"].strip() for m in received] == ["Refund of 50 EUR approved."]
    assert boxes.message(held["id"])["metadata"]["subject"] == "Your refund of 50 EUR"


async def test_reject_with_a_reason(boxes: Outboxes, tmp_path: Path) -> None:
    held = boxes.agent_sends("Discount code for everyone")
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        await pilot.press("X")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await pilot.press("enter")  # an empty reason is refused by the dialog
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await pilot.press(*"not approved by marketing", "enter")
        await settle(pilot)
        assert app.screen is screen
        assert rows(screen, "approvals") == []
    assert boxes.status(held["id"]) == "rejected"
    assert "Discount code for everyone" not in boxes.alice_subjects()


async def test_cancel_a_scheduled_send(boxes: Outboxes, tmp_path: Path) -> None:
    send_at = (datetime.now(UTC) + timedelta(hours=5)).isoformat(timespec="seconds")
    response = boxes.user.post("/v1/messages/send", json={
        "inboxId": boxes.seeded.me["id"], "to": [boxes.alice["address"]], "subject": "Monday reminder",
        "text": "Standup moved to 10:00.", "send_at": send_at})
    assert response.status_code == 202, response.text
    scheduled = response.json()["data"]
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot, everywhere=False)  # `me` is the inbox in view
        await pilot.press("2")
        await settle(pilot)
        assert screen.active_tab == "scheduled"
        assert "Monday reminder" in rows(screen, "scheduled")[0]
        assert "in 4h 59m" in rows(screen, "scheduled")[0] or "in 5h" in rows(screen, "scheduled")[0]
        assert "SCHEDULED" in review(screen)
        await pilot.press("A")  # approve belongs to the first tab: nothing happens here
        await pilot.press("C")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert rows(screen, "scheduled") == []
    assert boxes.status(scheduled["id"]) == "cancelled"
    assert "Monday reminder" not in boxes.alice_subjects()


async def test_resume_a_draft_and_send_it(boxes: Outboxes, tmp_path: Path) -> None:
    draft = ok(boxes.agent.post("/v1/drafts", json={
        "inbox_id": boxes.seeded.me["id"], "to": [boxes.alice["address"]], "subject": "Draft: lunch",
        "text": "Shall we try the new place?"}))["data"]
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        await pilot.press("3")
        await settle(pilot)
        assert "Draft: lunch" in rows(screen, "drafts")[0]
        assert "DRAFT" in review(screen)
        await pilot.press("enter")
        await settle(pilot)
        composer = app.screen
        assert isinstance(composer, ComposeScreen)
        assert composer.query_one("#to", Input).value == boxes.alice["address"]
        assert composer.query_one("#subject", Input).value == "Draft: lunch"
        composer.query_one("#body", TextArea).text = "Shall we try the new place on Thursday?"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        await wait_until(pilot, lambda: rows(screen, "drafts") == [])
    assert boxes.user.get(f"/v1/drafts/{draft['id']}").status_code == 404
    assert boxes.alice_subjects().count("Draft: lunch") == 1


async def test_a_resumed_draft_postponed_again_is_updated_in_place(boxes: Outboxes, tmp_path: Path) -> None:
    draft = ok(boxes.user.post("/v1/drafts", json={
        "inbox_id": boxes.seeded.me["id"], "to": [boxes.alice["address"]], "subject": "Agenda",
        "text": "1. budget"}))["data"]
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_outbox(pilot, everywhere=False)
        await pilot.press("3", "enter")
        await settle(pilot)
        composer = app.screen
        assert isinstance(composer, ComposeScreen)
        composer.query_one("#cc", Input).value = boxes.seeded.others["bob"]["address"]
        composer.query_one("#body", TextArea).text = "1. budget\n2. hiring"
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert isinstance(app.screen, OutboxScreen)
        await wait_until(pilot, lambda: "Agenda" in " ".join(rows(app.screen, "drafts")))
    drafts = ok(boxes.user.get("/v1/drafts"))["data"]
    assert [(d["id"], d["cc"], d["text"]) for d in drafts] == [
        (draft["id"], [boxes.seeded.others["bob"]["address"]], "1. budget\n2. hiring")]


async def test_send_later_from_the_composer(boxes: Outboxes, tmp_path: Path) -> None:
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        fill(await open_composer(pilot), boxes.alice["address"], "Weekly numbers", "Numbers next week.")
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert isinstance(app.screen, SendLaterDialog)
        await pilot.press(*"in 45d")
        await pilot.pause()
        assert "more than 30 days ahead" in str(app.screen.query_one("#send-at-verdict", Static).render())
        await pilot.press("enter")  # refused: the dialog stays
        await settle(pilot)
        assert isinstance(app.screen, SendLaterDialog)
        app.screen.query_one("#send-at", Input).value = ""
        before = datetime.now(UTC)
        await pilot.press(*"in 2h")
        await pilot.pause()
        assert "→" in str(app.screen.query_one("#send-at-verdict", Static).render())
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, (SendLaterDialog, ComposeScreen))
        assert [n.title for n in app._notifications] == ["Not scheduled", "Scheduled"]
        assert re.search(r"\(in (2h|1h 59m)\)", str(list(app._notifications)[-1].message))
    scheduled = ok(boxes.user.get("/v1/outbox", params={"status": "scheduled",
                                                        "inbox_id": boxes.seeded.me["id"]}))["data"]
    assert [m["message"]["metadata"]["subject"] for m in scheduled] == ["Weekly numbers"]
    send_at = datetime.fromisoformat(scheduled[0]["send_at"])
    assert timedelta(hours=2) - timedelta(seconds=5) <= send_at - before <= timedelta(hours=2, seconds=60)
    assert "Weekly numbers" not in boxes.alice_subjects()


async def test_postpone_keeps_a_draft_on_the_server(boxes: Outboxes, tmp_path: Path) -> None:
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        fill(await open_composer(pilot), boxes.alice["address"], "Half-written thought", "To be continued")
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert not isinstance(app.screen, ComposeScreen)
    drafts = ok(boxes.user.get("/v1/drafts", params={"inbox_id": boxes.seeded.me["id"]}))["data"]
    assert [(d["subject"], d["to"], d["text"]) for d in drafts] == [
        ("Half-written thought", [boxes.alice["address"]], "To be continued")]
    assert "Half-written thought" not in boxes.alice_subjects()


async def test_tree_counts_and_a_toast_when_a_message_starts_waiting(boxes: Outboxes, tmp_path: Path) -> None:
    app = boxes.app(tmp_path, live_updates=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: app.live_mode == "stream")
        await pilot.pause(0.3)  # the stream is subscribed once its first byte arrived
        boxes.agent_sends("Contract renewal terms")
        await wait_until(pilot, lambda: any("Contract renewal terms" in str(n.message)
                                            for n in app._notifications))
        note = next(n for n in app._notifications if "Contract renewal terms" in str(n.message))
        assert note.title == "Waiting for your approval"
        tree = app.screen.query_one(MailboxTree)
        await wait_until(pilot, lambda: tree.outbox_counts.get("approvals") == 1)
        assert [str(c.label) for c in tree.outbox_node.children] == [
            "Awaiting approval 1", "Scheduled", "Drafts"]
        tree.focus()
        tree.move_cursor(tree.outbox_node.children[0], animate=False)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OutboxScreen)
        assert app.screen.inbox is None
        assert "Contract renewal terms" in rows(app.screen, "approvals")[0]



async def test_a_message_cancelled_meanwhile_cannot_be_approved(boxes: Outboxes, tmp_path: Path) -> None:
    held = boxes.agent_sends("Quote for 40 licences")
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        assert "Quote for 40 licences" in rows(screen, "approvals")[0]
        ok(boxes.agent.post(f"/v1/messages/{held['id']}/cancel"))  # the agent withdraws it
        await pilot.press("A")
        await settle(pilot)
        notes = [(n.title, str(n.message)) for n in app._notifications]
        assert notes[-1][0] == "Could not approve"
        assert "cancelled" in notes[-1][1]
        assert rows(screen, "approvals") == []  # the list shows the server's state again
    assert boxes.status(held["id"]) == "cancelled"
    assert "Quote for 40 licences" not in boxes.alice_subjects()


async def test_a_person_cannot_approve_their_own_held_send(boxes: Outboxes, tmp_path: Path) -> None:
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        composer = await open_composer(pilot)
        composer.query_one("#from").value = boxes.support["id"]
        fill(composer, boxes.alice["address"], "Price list 2027", "The new price list.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert [n.title for n in app._notifications] == ["Waiting for approval"]
        app.clear_notifications()
        screen = await open_outbox(pilot)
        assert "Price list 2027" in rows(screen, "approvals")[0]
        await pilot.press("A")
        await settle(pilot)
        note = list(app._notifications)[-1]
        assert note.title == "Could not approve"
        assert "submitted itself" in str(note.message)
        assert "Price list 2027" in rows(screen, "approvals")[0]
    assert "Price list 2027" not in boxes.alice_subjects()


async def test_held_text_from_an_agent_is_shown_literally(boxes: Outboxes, tmp_path: Path) -> None:
    subject = f"{hostile.QUIT_CLICK} {hostile.STYLED}"
    boxes.agent_sends(subject, "Body RED>\x1b[31;1m<RED and [@click=app.quit]here[/]")
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        await settle(pilot)
        assert subject in rows(screen, "approvals")[0]
        shown = review(screen)
        assert subject in shown
        assert "RED><RED and [@click=app.quit]here[/]" in shown
        assert "\x1b" not in shown
        await pilot.click("#review-text")
        await settle(pilot)
        assert app.is_running and app.screen is screen


async def test_edit_in_the_editor_then_approve(boxes: Outboxes, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    held = boxes.agent_sends("Meeting notes", "Notes: we agreed on 12 seats.")
    opened: list[str] = []

    def rewrite(app: CommuneApp, text: str) -> str:
        opened.append(text)
        return text.replace("Meeting notes", "Meeting notes (corrected)").replace("12 seats", "10 seats")

    monkeypatch.setattr(editor, "edit_text", rewrite)
    app = boxes.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_outbox(pilot)
        await pilot.press("ctrl+e")
        await settle(pilot)
        assert opened == [f"To: {boxes.alice['address']}\nCc: \nBcc: \nSubject: Meeting notes\n\n"
                          "Notes: we agreed on 12 seats."]
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert rows(screen, "approvals") == []
    assert boxes.alice_subjects().count("Meeting notes (corrected)") == 1
    assert boxes.message(held["id"])["content"] == "Notes: we agreed on 10 seats."


def test_the_editor_file_reads_back_into_the_fields() -> None:
    before = Draft(to="a@example.com", subject="Hello", body="Body\n\nwith a blank line")
    text = message_text(before)
    assert parse_message_text(text, before) == before
    after = parse_message_text("to: b@example.com,\n  c@example.com\nSubject: Hi\n\nNew body", before)
    assert (after.to, after.cc, after.subject, after.body) == ("b@example.com, c@example.com", "", "Hi",
                                                               "New body")
    assert approval_edits(before, after) == {"to": ["b@example.com", "c@example.com"], "subject": "Hi",
                                             "text": "New body"}
    with pytest.raises(ValueError, match="Only To, Cc, Bcc and Subject"):
        parse_message_text("From: someone@else.test\n\nBody", before)
    with pytest.raises(ValueError, match="cannot read 'no header here'"):
        parse_message_text("no header here\n\nBody", before)
