"""The client's typed view of API objects; lenient about extra fields, strict about what it uses."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from .formatting import clean_data, split_addresses


class Model(BaseModel):
    """An object the server sent: every string in it is cleaned for the terminal as it is built, so
    no subject, name, body or error from a stranger can carry escape sequences into any widget."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _displayable(cls, data: Any) -> Any:
        return clean_data(data)


class DnsRecord(Model):
    record: str | None = None
    type: str | None = None
    name: str | None = None
    value: str | None = None
    status: str | None = None
    priority: int | None = None
    ttl: str | int | None = None


class InboxBrief(Model):
    id: str
    address: str | None = None


class Domain(Model):
    id: str
    name: str = ""
    status: str | None = None
    region: str | None = None
    shared: bool = False
    records: list[DnsRecord] = Field(default_factory=list)
    inboxes: list[InboxBrief] = Field(default_factory=list)

    @field_validator("records", "inboxes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return value or []


class Webhook(Model):
    endpoint: str | None = None
    events: list[str] | None = None
    secret: str | None = None


class InboxCounts(Model):
    """Server-side thread counts of an inbox (the trash left out of `threads`)."""

    threads: int = 0
    unread_threads: int = 0
    flagged_threads: int = 0
    trash_threads: int = 0


class Inbox(Model):
    id: str
    address: str = ""
    local_part: str = Field("", validation_alias=AliasChoices("localPart", "local_part"))
    domain_id: str | None = None
    domain_name: str | None = None
    display_name: str | None = Field(None, validation_alias=AliasChoices("displayName", "display_name"))
    webhook: Webhook | None = None
    counts: InboxCounts | None = None


class ThreadSummary(Model):
    thread_id: str
    subject: str | None = None
    last_message_at: str
    first_message_at: str | None = None
    message_count: int = 0
    snippet: str | None = None
    last_direction: str | None = None
    last_sender: str | None = None
    last_sender_name: str | None = None
    inbox_id: str | None = None
    domain_id: str | None = None
    has_attachments: bool = False
    unread_count: int = 0
    labels: list[str] = Field(default_factory=list)
    """The union of its messages' labels: `unread`, `flagged`, `archived`, `trash`, `sent`, … ."""

    @property
    def unread(self) -> bool:
        return "unread" in self.labels

    @property
    def flagged(self) -> bool:
        return "flagged" in self.labels

    @field_validator("message_count", "unread_count", mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return value or 0


class Contact(Model):
    """An address this organisation exchanged mail with, and the name it last gave."""

    address: str
    name: str | None = None


class Participant(Model):
    role: str
    identity: str


class Attachment(Model):
    attachment_id: str
    filename: str = "attachment"
    mime_type: str = "application/octet-stream"
    size: int = 0
    message_id: str | None = None


class Message(Model):
    message_id: str
    thread_id: str
    direction: str = "inbound"
    participants: list[Participant] = Field(default_factory=list)
    content: str | None = None
    content_html: str | None = None
    attachments: list[str] = Field(default_factory=list)
    created_at: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    authentication: dict[str, str | None] | None = None
    """SPF/DKIM/DMARC results of mail received over SMTP (null for mail that never crossed SMTP)."""
    labels: list[str] = Field(default_factory=list)
    sent_at: str | None = None
    """The sender's `Date:` header (null when absent or unparseable); `created_at` is the arrival."""

    def addresses(self, role: str) -> list[str]:
        return [p.identity for p in self.participants if p.role == role]

    @property
    def sender_name(self) -> str:
        return str(self.metadata.get("sender_name") or "")

    @property
    def reply_to(self) -> list[str]:
        """The `Reply-To:` addresses, where replies go instead of the sender."""
        return split_addresses(str(self.metadata.get("reply_to") or ""))

    @property
    def date(self) -> str | None:
        """When the sender says they sent it, else when it arrived."""
        return self.sent_at or self.created_at

    @property
    def sender(self) -> str:
        senders = self.addresses("sender")
        return senders[0] if senders else ""

    @property
    def subject(self) -> str:
        return str(self.metadata.get("subject") or "")


class Page(Model):
    """One page of a cursor-paged list."""

    data: list[ThreadSummary] = Field(default_factory=list)
    next_cursor: str | None = None
    has_more: bool = False


class Rejection(Model):
    email: str
    reason: str = ""


class Validation(Model):
    rejected: list[Rejection] = Field(default_factory=list)
    warnings: list[Rejection] = Field(default_factory=list)
    suppressed: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.rejected or self.warnings or self.suppressed)


class SendResult(Model):
    id: str | None = None
    message_id: str | None = None
    thread_id: str | None = None
    status: str | None = None
    validation: Validation = Field(default_factory=Validation)


class AttachmentUrl(Model):
    url: str
    filename: str = "attachment"
    mime_type: str = Field("", validation_alias=AliasChoices("mime_type", "mimeType"))
    size: int = 0


class ServerEvent(Model):
    """One event from the live stream."""

    id: str | None = None
    type: str = "message"
    data: dict[str, Any] = Field(default_factory=dict)


class DeletionRequest(Model):
    id: str
    scope: str | None = None
    status: str | None = None
    preview: dict[str, Any] = Field(default_factory=dict)
    confirmation_token: str | None = None
    confirm_by: str | None = None
    warning: str | None = None
    deleted_counts: dict[str, Any] = Field(default_factory=dict)


class Draft(BaseModel):
    """A message being written: what the composer edits and what a failed send keeps (the user's own
    text, so it is sent as typed)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    inbox_id: str | None = None
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    thread_id: str | None = None
    draft_id: str | None = None
    """Set when the composer resumed a draft kept by the server: sending sends that draft."""


def _addresses(value: Any) -> list[str]:
    """A recipient field as the API may send it: a list, one string, or nothing."""
    if not value:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(item) for item in value]


class OutboxMessage(Message):
    """A message that has not left yet (`/v1/approvals`, `/v1/outbox`): waiting for a person's approval
    or for its `send_at`, with the recipient verdict the server reached when it was submitted."""

    status: str | None = None
    send_at: str | None = None
    expires_at: str | None = None
    reason: str | None = None
    submitted_by: str | None = None
    """The id of the API key that submitted it."""
    validation: Validation = Field(default_factory=Validation)

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        # The outbox's fields sit beside the message they describe: one object of both.
        if isinstance(data, dict):
            message = data.get("message") if isinstance(data.get("message"), dict) else {}
            data = {**message, **{k: v for k, v in data.items() if k != "message" and v is not None}}
            data["message_id"] = data.get("message_id") or data.get("id")
            data["thread_id"] = data.get("thread_id") or ""
        return data

    @property
    def inbox_id(self) -> str:
        return str(self.metadata.get("inbox_id") or "")


class OutboxCounts(Model):
    """`GET /v1/outbox/counts`."""

    drafts: int = 0
    pending_approval: int = 0
    scheduled: int = 0


class ServerDraft(Model):
    """A draft kept by the server (`/v1/drafts`): postponed in the composer, or written by an agent."""

    id: str
    inbox_id: str | None = Field(None, validation_alias=AliasChoices("inbox_id", "inboxId"))
    sender: str | None = Field(None, validation_alias=AliasChoices("from", "sender"))
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: list[str] = Field(default_factory=list)
    thread_id: str | None = None
    in_reply_to: str | None = None
    send_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> list[str]:
        return _addresses(value)

    @field_validator("attachments", mode="before")
    @classmethod
    def _attachment_ids(cls, value: Any) -> list[str]:
        # Either ids, or attachment objects carrying one.
        items = value or []
        return [str(i.get("attachment_id") or i.get("id")) if isinstance(i, dict) else str(i) for i in items]

    @field_validator("subject", "text", mode="before")
    @classmethod
    def _none_is_blank(cls, value: Any) -> Any:
        return value or ""
