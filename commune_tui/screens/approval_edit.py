"""Edit a held message, then approve it with what was changed (subject, text, recipients): in the
composer, where `ctrl+s` approves, or as one text file in `$EDITOR`. The server keeps the diff in its
audit log."""

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
EDITABLE_HEADERS = ("To", "Cc", "Bcc", "Subject")


def draft_of(message: OutboxMessage) -> Draft:
    """The held message as the composer edits it."""
    return Draft(inbox_id=message.inbox_id, to=", ".join(message.addresses("to")),
                 cc=", ".join(message.addresses("cc")), bcc=", ".join(message.addresses("bcc")),
                 subject=message.subject, body=message.content or html_to_text(message.content_html or ""),
                 thread_id=message.thread_id or None)


def message_text(draft: Draft) -> str:
    """The file `$EDITOR` opens: the editable headers, a blank line, the body."""
    headers = "".join(f"{name}: {getattr(draft, name.lower())}\n" for name in EDITABLE_HEADERS)
    return f"{headers}\n{draft.body}"


def parse_message_text(text: str, before: Draft) -> Draft:
    """The draft the edited file describes; raises ValueError, worded for the user, for a header that
    cannot change or a line that is not a header."""
    head, _, body = text.partition("\n\n")
    values: dict[str, str] = {}
    name = ""
    for raw in head.splitlines():
        if raw[:1] in (" ", "\t") and name:
            values[name] += " " + raw.strip()  # a folded header line continues the one above
            continue
        name, colon, value = raw.partition(":")
        name = name.strip().lower()
        if not colon or name.title() not in EDITABLE_HEADERS:
            raise ValueError(f"Only To, Cc, Bcc and Subject can change; cannot read {raw.strip()!r}")
        values[name] = value.strip()
    return before.model_copy(update={**values, "body": body})


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
        super().__init__(draft_of(message), message.attachments)
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
