"""Edit a held message, then approve it: the composer with the message's fields, where `ctrl+s`
approves with what was changed (subject, text, recipients); the server keeps the diff in its audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from textual.binding import Binding
from textual.widgets import Select

from ..formatting import html_to_text, split_addresses
from ..models import Draft, OutboxMessage, SendResult
from .compose import ComposeScreen

NOT_HERE = {"send_later", "postpone", "attach", "remove_attachment"}
"""Composer keys an approval cannot use: the server takes only new text and recipients."""


def approval_edits(before: Draft, after: Draft) -> dict[str, Any]:
    """The fields of `after` that differ from `before`, as `POST /v1/messages/{id}/approve` takes them."""
    edits: dict[str, Any] = {}
    for field in ("to", "cc", "bcc"):
        if split_addresses(getattr(after, field)) != split_addresses(getattr(before, field)):
            edits[field] = split_addresses(getattr(after, field))
    if after.subject.strip() != before.subject.strip():
        edits["subject"] = after.subject.strip()
    if after.body != before.body:
        edits["text"] = after.body
    return edits


class ApprovalComposeScreen(ComposeScreen):
    """`ctrl+s` approves; the composer's sending, errors and notices apply unchanged."""

    BINDINGS = [Binding("ctrl+s", "send", "Approve", priority=True, id="approve.send")]

    def __init__(self, message: OutboxMessage) -> None:
        draft = Draft(inbox_id=message.inbox_id, to=", ".join(message.addresses("to")),
                      cc=", ".join(message.addresses("cc")), bcc=", ".join(message.addresses("bcc")),
                      subject=message.subject,
                      body=message.content or html_to_text(message.content_html or ""), thread_id=message.thread_id or None)
        super().__init__(draft, message.attachments)
        self.message = message

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#composer").border_title = "Edit, then approve (ctrl+s)"
        self.query_one("#from", Select).disabled = True
        self.query_one("#attachments").border_title = "Attachments (as submitted)"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action not in NOT_HERE

    async def deliver(self, draft: Draft, send_at: datetime | None) -> SendResult:
        """Approve the held message with what was changed in it, instead of sending a new one."""
        return await self.app.client.approve(self.message.message_id, approval_edits(self.draft, draft))

    def announce_held(self, result: SendResult, draft: Draft, send_at: datetime | None) -> bool:
        title = "Approved, scheduled" if result.status == "scheduled" else "Approved, on its way"
        self.app.notify(f"To {draft.to}", title=title, markup=False)
        return True
