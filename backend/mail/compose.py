"""Outgoing mail as RFC 5322 bytes, built with the stdlib `email` package."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, localtime

from ..models.headers import header_safe
from ..util import iso
from .model import IncomingAttachment, IncomingMessage
from .render import html_to_text

# How many ancestors a reply's References header keeps (RFC 5322 allows trimming the middle).
MAX_REFERENCES = 20
MAX_LINE = 78
"""policy.SMTP's `max_line_length`: a longer header is folded, a longer body line is encoded."""
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*\Z")
_PLAIN_TEXT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*\Z")
_PLAIN_ID = re.compile(r"<[A-Za-z0-9._-]+@[A-Za-z0-9.-]+>\Z")


@dataclass
class Outgoing:
    """Everything a sent message says, in the shape the composer and local delivery share."""

    sender: str
    sender_name: str | None
    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[IncomingAttachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    smtp_message_id: str = ""
    date: datetime = field(default_factory=localtime)
    """The Date header (local time with its offset); the stored copy's `sent_at`."""

    def __post_init__(self) -> None:
        if not self.smtp_message_id:
            self.smtp_message_id = new_smtp_message_id(self.sender.rsplit("@", 1)[-1])


def new_smtp_message_id(domain: str) -> str:
    """A globally unique Message-ID on the sender's domain, angle brackets included."""
    return f"<{uuid.uuid4()}@{domain}>"


def reply_references(parent_id: str | None, parent_refs: list[str]) -> list[str]:
    """A reply's References: the parent's chain plus the parent, keeping the first and the latest."""
    chain = [r for r in parent_refs if r] + ([parent_id] if parent_id else [])
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return chain


def _display_name(name: str | None) -> str:
    # Display names come from users; line breaks and control characters must never reach a header.
    return " ".join("".join(c if c.isprintable() else " " for c in name or "").split())


def _address(addr: str, name: str | None = None) -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=_display_name(name), username=local, domain=domain)


def compose(out: Outgoing) -> bytes:
    """The message as CRLF bytes: text/html alternatives, attachments as parts, no Bcc header."""
    return _plain_text(out) or _compose(out)


def _plain_text(out: Outgoing) -> bytes | None:
    """The common message (plain ASCII text in short lines, plain addresses and names, a short ASCII
    subject, no HTML, attachments or extra headers) written directly: the same bytes `_compose` gives,
    in ~25 µs instead of ~1 ms (the `email` package parses and refolds every header it is given). None
    for anything else."""
    if out.html or out.attachments or out.headers or not out.to or out.text is None:
        return None
    name = _display_name(out.sender_name)
    if (name and not _PLAIN_NAME.match(name)) or not _PLAIN_TEXT.match(out.subject) or "=?" in out.subject:
        return None
    addresses = [out.sender, *out.to, *out.cc, *out.reply_to]
    ids = [out.smtp_message_id, *([out.in_reply_to] if out.in_reply_to else []), *out.references]
    if not all(_PLAIN_ADDRESS.match(a) for a in addresses) or not all(_PLAIN_ID.match(i) for i in ids):
        return None
    lines = out.text.encode("utf-8").splitlines()
    if not out.text.isascii() or any(len(line) > MAX_LINE for line in lines):
        return None
    headers = [("From", f"{name} <{out.sender}>" if name else out.sender), ("To", ", ".join(out.to))]
    if out.cc:
        headers.append(("Cc", ", ".join(out.cc)))
    if out.reply_to:
        headers.append(("Reply-To", ", ".join(out.reply_to)))
    headers += [("Subject", out.subject), ("Date", format_datetime(out.date.replace(microsecond=0))),
                ("Message-ID", out.smtp_message_id)]
    if out.in_reply_to:
        headers.append(("In-Reply-To", out.in_reply_to))
    if out.references:
        headers.append(("References", " ".join(out.references)))
    head = [f"{field}: {value}" for field, value in headers]
    if any(len(line) > MAX_LINE for line in head):
        return None
    head += ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 7bit", "MIME-Version: 1.0"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + b"\r\n".join(lines) + b"\r\n"


def _compose(out: Outgoing) -> bytes:
    """Any message, through the `email` package."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = _address(out.sender, out.sender_name)
    # With every To refused or only Bcc recipients left, RFC 5322 §3.6.3's empty group stands in.
    message["To"] = [_address(a) for a in out.to] if out.to else "undisclosed-recipients:;"
    if out.cc:
        message["Cc"] = [_address(a) for a in out.cc]
    if out.reply_to:
        message["Reply-To"] = [_address(a) for a in out.reply_to]
    message["Subject"] = out.subject
    message["Date"] = format_datetime(out.date.replace(microsecond=0))
    message["Message-ID"] = out.smtp_message_id
    if out.in_reply_to:
        message["In-Reply-To"] = out.in_reply_to
    if out.references:
        message["References"] = " ".join(out.references)
    for name, value in out.headers.items():
        message[name] = value
    text = out.text if out.text is not None else html_to_text(out.html or "")
    message.set_content(text)
    if out.html:
        message.add_alternative(out.html, subtype="html")
    for part in out.attachments:
        maintype, _, subtype = (part.mime_type or "application/octet-stream").partition("/")
        message.add_attachment(part.content, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=header_safe(part.filename) or "attachment")
    return message.as_bytes()


def as_incoming(out: Outgoing, raw: bytes) -> IncomingMessage:
    """The sent message as a recipient here receives it (Bcc stays hidden, as on the wire)."""
    return IncomingMessage(
        sender=out.sender,
        sender_name=out.sender_name,
        to=list(out.to),
        cc=list(out.cc),
        subject=out.subject,
        text=out.text if out.text is not None else html_to_text(out.html or ""),
        html=out.html,
        smtp_message_id=out.smtp_message_id,
        in_reply_to=out.in_reply_to,
        references=list(out.references),
        attachments=list(out.attachments),
        raw=raw,
        date=iso(out.date.replace(microsecond=0)),
        headers={"reply-to": ", ".join(out.reply_to)} if out.reply_to else {},
    )
