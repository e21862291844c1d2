"""Request bodies and response shapes for messages, threads, attachments and search (CONTRACT.md §4)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..util import iso
from .headers import (
    Mailbox,
    parse_mailbox,
    unsafe_header_character,
    validate_body_text,
    validate_header_text,
)

MAX_SUBJECT = 500
MAX_LABEL = 64
MAX_LABELS = 50
"""How many labels one message holds at most."""
SERVER_LABELS = ("sent", "received", "quarantine")
"""System labels only the server sets (a message's direction, inbound authentication's verdict)."""
CLIENT_LABELS = ("unread", "flagged", "archived", "trash")
"""System labels clients set and clear; any other string is a user label."""
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,75}$")
# Headers the server writes itself; letting a caller set them would forge the message's structure.
STRUCTURAL_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "Reply-To", "Sender", "Return-Path", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        "Content-Disposition", "Content-ID", "DKIM-Signature", "Received", "Resent-From", "Resent-To",
        "Resent-Cc", "Resent-Bcc", "Resent-Date", "Resent-Message-ID", "Resent-Sender",
    )
)


def clean_label(value: str) -> str:
    """A label as stored: trimmed and lower-cased, 1-64 printable characters without `,` `"` or `\\`."""
    label = value.strip().lower()
    if not label or len(label) > MAX_LABEL or any(not c.isprintable() or c in ',"\\' for c in label):
        raise ValueError(f"each label must be 1-{MAX_LABEL} printable characters without , \" or \\")
    return label


def clean_labels(values: list[str], changeable: bool = False) -> list[str]:
    """Labels cleaned and without repeats; `changeable` refuses the ones only the server sets."""
    labels = list(dict.fromkeys(clean_label(v) for v in values))
    fixed = [label for label in labels if changeable and label in SERVER_LABELS]
    if fixed:
        raise ValueError(f"'{fixed[0]}' is set by the server and cannot be added or removed")
    return labels


class LabelChanges(BaseModel):
    """`add_labels` / `remove_labels` of a PATCH on a message or thread (removals win over additions)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    add_labels: list[str] | None = Field(None, max_length=MAX_LABELS,
                                         validation_alias=AliasChoices("add_labels", "addLabels"))
    remove_labels: list[str] | None = Field(None, max_length=MAX_LABELS,
                                            validation_alias=AliasChoices("remove_labels", "removeLabels"))

    @field_validator("add_labels", "remove_labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        return clean_labels(value, changeable=True) if value is not None else None

    @property
    def label_changes(self) -> tuple[list[str], list[str]]:
        return self.add_labels or [], self.remove_labels or []


MAX_SCHEDULE_DAYS = 30


def normalise_send_at(value: str | None) -> str | None:
    """`send_at` as a UTC timestamp; it must carry its UTC offset and lie at most 30 days ahead."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        raise ValueError("must be an ISO 8601 time with a UTC offset, e.g. 2025-03-15T08:30:00+01:00") from None
    if moment.tzinfo is None or "T" not in text.upper():
        raise ValueError("must be an ISO 8601 time with a UTC offset, e.g. 2025-03-15T08:30:00Z")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if moment > datetime.now(UTC) + timedelta(days=MAX_SCHEDULE_DAYS):
        raise ValueError(f"must be at most {MAX_SCHEDULE_DAYS} days ahead")
    return iso(moment)


def _address_list(value: Any, field: str) -> list[str]:
    """A string or list of strings as the addresses they name, each entry exactly one mailbox.

    Display names are dropped here: recipients are addressed by the angle-addr alone, so nothing a
    caller writes around it can add a recipient or change which one is meant.
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"{field} must be a string or a list of strings")
    return [parse_mailbox(i).address for i in items if i.strip()]


class MessageFields(BaseModel):
    """What a message to send is made of; a draft may leave any of it empty (`SendMessage` may not)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    reply_to: list[str] = Field(default_factory=list, validation_alias=AliasChoices("reply_to", "replyTo"))
    subject: str = Field("", max_length=MAX_SUBJECT)
    html: str | None = None
    text: str | None = None
    from_: str | None = Field(None, validation_alias=AliasChoices("from", "from_address", "from_"))
    inbox_id: str | None = Field(None, validation_alias=AliasChoices("inboxId", "inbox_id"))
    domain_id: str | None = Field(None, validation_alias=AliasChoices("domainId", "domain_id"))
    thread_id: str | None = Field(None, validation_alias=AliasChoices("thread_id", "threadId"))
    attachments: list[str] = Field(default_factory=list, max_length=100)
    headers: dict[str, str] = Field(default_factory=dict)
    send_at: str | None = Field(None, validation_alias=AliasChoices("send_at", "sendAt"))
    """When to send (ISO 8601 with a UTC offset); past times send now, at most 30 days ahead."""

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: str | None) -> str | None:
        return normalise_send_at(value)

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _addresses(cls, value: Any, info: Any) -> list[str]:
        return _address_list(value, info.field_name)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return validate_header_text(value).strip()

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_mailbox(value)
        return value

    @field_validator("text", "html")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        return validate_body_text(value) if value is not None else None

    @field_validator("attachments", mode="before")
    @classmethod
    def _attachments(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be an object of header names to string values")
        for name, text in value.items():
            if not isinstance(name, str) or not HEADER_NAME_RE.match(name):
                raise ValueError(f"'{name}' is not a valid header name")
            if name.lower() in STRUCTURAL_HEADERS:
                raise ValueError(f"'{name}' is set by the server and cannot be overridden")
            bad = unsafe_header_character(text) if isinstance(text, str) else "a value that is not a string"
            if bad is not None:
                raise ValueError(f"value of '{name}' must be one line of text without control characters"
                                 f" (found {bad})")
        # Mail readers drop white space around a header value, so it is not kept here either.
        return {name: text.strip() for name, text in value.items()}

    @property
    def sender(self) -> Mailbox | None:
        """The `from` mailbox (display name and address), when one was given."""
        return parse_mailbox(self.from_) if self.from_ is not None else None


class SendMessage(MessageFields):
    """`POST /v1/messages/send`, with the aliases the official clients send (CONTRACT.md §8)."""

    to: list[str]
    subject: str = Field(max_length=MAX_SUBJECT)

    @model_validator(mode="after")
    def _body_and_recipients(self) -> SendMessage:
        if not self.to:
            raise ValueError("to: at least one recipient is required")
        if not (self.text or self.html):
            raise ValueError("text or html: at least one body is required")
        if len(self.reply_to) > 10:
            raise ValueError("reply_to: at most 10 addresses")
        return self


class UploadAttachment(BaseModel):
    """`POST /v1/attachments/upload` as base64 JSON."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    content: str
    filename: str = Field(min_length=1, max_length=255)
    mime_type: str | None = Field(None, validation_alias=AliasChoices("mime_type", "mimeType"), max_length=255)


def _loads(value: str | None, default: Any) -> Any:
    # Most stored lists (tags, references, attachments) are empty: skip the decoder for those.
    if value == "[]":
        return []
    return json.loads(value) if value else default


def _without_nulls(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def message_json(row: Any) -> dict[str, Any]:
    """A stored message as the API shows it (passes the SDK's `Message` model)."""
    extra = _loads(row["extra"], {})
    metadata = _without_nulls({
        "created_at": row["created_at"],
        "subject": row["subject"],
        "in_reply_to": row["in_reply_to"],
        "references": _loads(row["refs"], []),
        "domain_id": row["domain_id"],
        "inbox_id": row["inbox_id"],
        "inbox_address": extra.get("inbox_address"),
        "message_id": row["smtp_message_id"],
        "delivery_status": row["delivery_status"],
        "sender_name": extra.get("sender_name"),
        "reply_to": extra.get("reply_to"),
    })
    return {
        "id": row["id"],
        "message_id": row["id"],
        "thread_id": row["thread_id"],
        "channel": "email",
        "direction": row["direction"],
        "participants": _loads(row["participants"], []),
        "content": row["text_body"] or "",
        "content_html": row["html_body"],
        "attachments": _loads(row["attachment_ids"], []),
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
        "metadata": metadata,
        **authentication_json(row),
        # The names the official CLI's message tables read.
        "from": row["sender"],
        "subject": row["subject"],
        "date": row["created_at"],
        "threadId": row["thread_id"],
        "createdAt": row["created_at"],
    }


def authentication_json(row: Any) -> dict[str, Any]:
    """A message's `labels` and inbound `authentication` (SPF/DKIM/DMARC; null for mail not received by SMTP)."""
    return {"labels": _loads(row["labels"], []), "authentication": _loads(row["authentication"], None)}


def thread_json(row: Any) -> dict[str, Any]:
    """A thread summary (passes the SDK's `Thread` model); triage fields ride along."""
    return {
        "thread_id": row["id"],
        "subject": row["subject"],
        "last_message_at": row["last_message_at"],
        "first_message_at": row["first_message_at"],
        "message_count": row["message_count"],
        "snippet": row["snippet"],
        "last_direction": row["last_direction"],
        "last_sender": row["last_sender"],
        "last_sender_name": row["last_sender_name"],
        "inbox_id": row["inbox_id"],
        "domain_id": row["domain_id"],
        "has_attachments": bool(row["has_attachments"]),
        "unread_count": row["unread_count"],
        "tags": _loads(row["tags"], []),
        "status": row["status"],
        "assigned_to": row["assigned_to"],
        "labels": _loads(row["labels"], []),
        # The names the official CLI's thread tables read.
        "id": row["id"],
        "participantCount": row["participant_count"],
        "lastActivityAt": row["last_message_at"],
    }


def search_result_json(row: Any) -> dict[str, Any]:
    """A thread as a search hit (CONTRACT.md §3.6, S1), with the thread fields beside it.

    `score` is how many of the thread's messages match the query.
    """
    return {
        **thread_json(row),
        "last_activity": row["last_message_at"],
        "score": row["score"],
    }


def attachment_json(row: Any) -> dict[str, Any]:
    """Attachment metadata (passes the SDK's `Attachment` and `AttachmentUpload` models)."""
    return _without_nulls({
        "attachment_id": row["id"],
        "filename": row["filename"],
        "mime_type": row["mime_type"],
        "size": row["size"],
        "source": row["source"],
        "storage_type": "local",
        "message_id": row["message_id"],
        "inbox_id": row["inbox_id"],
        "created_at": row["created_at"],
    })
