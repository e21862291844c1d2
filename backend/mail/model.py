"""The shape every message takes on its way into the store, whatever its source.

SMTP ingest (`smtp/inbound.py` + `mail/parse.py`), local delivery of mail sent through the API and
the bulk seeder all build an `IncomingMessage` and hand it to `MailStore.ingest`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IncomingAttachment:
    filename: str
    mime_type: str
    content: bytes


@dataclass
class IncomingMessage:
    sender: str
    """Bare address of the From header (lower-cased), or the envelope sender when From is unusable."""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str | None = None
    smtp_message_id: str | None = None
    """Message-ID with angle brackets, e.g. `<abc@host>`."""
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[IncomingAttachment] = field(default_factory=list)
    raw: bytes | None = None
    sender_name: str | None = None
    date: str | None = None
    """ISO timestamp from the Date header, informational; the stored `created_at` is arrival time."""
    headers: dict[str, str] = field(default_factory=dict)
