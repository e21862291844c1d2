"""The Outbox's review pane: a message or draft as it will leave, with the server's verdict on its
recipients, its attachments and the message it answers."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..dialogs.send_report import report_text
from ..display import line
from ..formatting import clean_line, clean_text, human_size, parse_time
from ..models import Attachment, Inbox, Message, OutboxMessage, ServerDraft
from ..sendtime import describe, until
from .reader import message_body

STATUS_LABELS = {
    "pending_approval": ("AWAITING APPROVAL", "bold yellow"),
    "scheduled": ("SCHEDULED", "bold cyan"),
    "draft": ("DRAFT", "bold"),
}
REPLY_PREVIEW_LINES = 6
LABEL = 13
"""Width of the header labels (`Attachments` and a space)."""


def recipients(item: OutboxMessage | ServerDraft, role: str) -> list[str]:
    return getattr(item, role) if isinstance(item, ServerDraft) else item.addresses(role)


def sender_of(item: OutboxMessage | ServerDraft, inboxes: list[Inbox]) -> str:
    """The From address: the message's sender, else the address of the inbox it leaves from."""
    if item.sender:
        return item.sender
    return next((i.address for i in inboxes if i.id == item.inbox_id), "")


def subject_of(item: OutboxMessage | ServerDraft) -> str:
    return item.subject or "(no subject)"


def body_of(item: OutboxMessage | ServerDraft) -> str:
    if isinstance(item, ServerDraft):
        return message_body(Message(message_id=item.id, thread_id="", content=item.text,
                                    content_html=item.html))
    return message_body(item)


def status_of(item: OutboxMessage | ServerDraft) -> str:
    return "draft" if isinstance(item, ServerDraft) else (item.status or "")


def _field(text: Text, label: str, value: str, style: str = "") -> None:
    text.append(f"{label:<{LABEL}}", style="bold")
    text.append(clean_line(value, limit=2000) + "\n", style=style)


def review_text(item: OutboxMessage | ServerDraft, now: datetime, inboxes: list[Inbox],
                attachments: dict[str, Attachment], replied: Message | None) -> Text:
    """Everything a person needs to decide: headers, verdict, attachments, what it answers, body."""
    text = Text()
    status = status_of(item)
    label, style = STATUS_LABELS.get(status, (status.upper() or "OUTBOX", "bold"))
    text.append(label, style=style)
    since = parse_time(item.updated_at if isinstance(item, ServerDraft) else item.created_at)
    if since is not None:
        verb = "saved" if isinstance(item, ServerDraft) else "submitted"
        text.append(f"  · {verb} {until(since, now)}", style="dim")
    if isinstance(item, OutboxMessage) and item.submitted_by:
        text.append(clean_line(f" by key {item.submitted_by}"), style="dim")
    text.append("\n\n")
    _field(text, "From", sender_of(item, inboxes))
    for label, role in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        found = recipients(item, role)
        if found or role == "to":
            _field(text, label, ", ".join(found) or "(nobody yet)")
    _field(text, "Subject", subject_of(item))
    moment = parse_time(item.send_at)
    if moment is not None:
        _field(text, "Sends", describe(moment, now), style="bold")
    expires = parse_time(item.expires_at) if isinstance(item, OutboxMessage) else None
    if expires is not None and status == "pending_approval":
        _field(text, "Expires", f"{describe(expires, now)}: rejected as expired unless decided")
    if isinstance(item, OutboxMessage):
        text.append(f"{'Recipients':<{LABEL}}", style="bold")
        if item.validation.empty:
            text.append("✓ every recipient passed validation\n", style="green")
        else:
            verdict = report_text(item.validation)
            verdict.pad_left(LABEL)
            text.append("\n")
            text.append_text(verdict)
    ids = item.attachments
    if ids:
        text.append(f"{'Attachments':<{LABEL}}", style="bold")
        for attachment_id in ids:
            found = attachments.get(attachment_id)
            if found is None:
                text.append(clean_line(f"✗ {attachment_id} (not found: deleted?)  "), style="red")
            else:
                text.append(clean_line(f"📎 {found.filename} {human_size(found.size)}  "))
        text.append("\n")
    if replied is not None:
        text.append(f"{'Replies to':<{LABEL}}", style="bold")
        text.append(clean_line(f"{replied.subject or '(no subject)'} — {replied.sender}") + "\n")
        quoted = message_body(replied).splitlines()[:REPLY_PREVIEW_LINES]
        for quoted_line in quoted:
            text.append(f"{'':<{LABEL}}> {clean_line(quoted_line)}\n", style="dim")
    text.append("\n" + "─" * 60 + "\n", style="dim")
    text.append(clean_text(body_of(item)))
    return text


def replied_message(messages: list[Message], item: OutboxMessage | ServerDraft) -> Message | None:
    """The message in the thread that `item` answers: the newest other one, sent before it."""
    own = item.message_id if isinstance(item, OutboxMessage) else None
    earlier = [m for m in messages if m.message_id != own
               and (not isinstance(item, OutboxMessage) or (m.created_at or "") <= (item.created_at or "~"))
               and m.metadata.get("status") not in ("pending_approval", "scheduled")]
    return earlier[-1] if earlier else None


class OutboxReview(VerticalScroll, can_focus=True):
    """The highlighted row of the Outbox, shown as it will leave."""

    BINDINGS = [
        Binding("j", "scroll_down", "Down", show=False, id="review.down"),
        Binding("k", "scroll_up", "Up", show=False, id="review.up"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text("Nothing selected.", style="dim"), id="review-text")

    def show(self, item: OutboxMessage | ServerDraft, now: datetime, inboxes: list[Inbox],
             attachments: dict[str, Attachment], replied: Message | None) -> None:
        self.query_one("#review-text", Static).update(review_text(item, now, inboxes, attachments, replied))

    def show_note(self, note: str) -> None:
        self.query_one("#review-text", Static).update(line(note, style="dim"))
