"""Raw RFC 5322 bytes from strangers → `IncomingMessage`, decoding what can be decoded and never raising.

The stdlib `email` package with `policy.default` does the MIME work; every step that can trip over a
broken message (bad boundaries, unknown charsets, undecodable headers, NUL bytes) falls back to a
lossy but safe value instead of failing, so an accepted message is always stored.
"""

from __future__ import annotations

import re
import uuid
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from ..store.mail_reads import safe_filename
from ..util import iso
from .model import IncomingAttachment, IncomingMessage

_MSGID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Headers longer than this are cut: a legitimate header is far shorter, and a huge one is an attack.
MAX_HEADER_CHARS = 16_000
MAX_REFERENCES = 100


def parse_message(raw: bytes, envelope_sender: str = "", hostname: str = "localhost") -> IncomingMessage:
    """Decode a raw message; a missing Message-ID is generated on `hostname`."""
    raw = raw.replace(b"\x00", b"")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:  # the parser is lenient, but a pathological input must not stop ingest
        message = EmailMessage(policy=policy.default)
        message.set_content(raw.decode("utf-8", "replace"))
    name, sender = _sender(message, envelope_sender)
    text, html, attachments = _bodies(message)
    message_id = _first_msgid(_header(message, "message-id"))
    return IncomingMessage(
        sender=sender,
        sender_name=name or None,
        to=_addresses(message, "to"),
        cc=_addresses(message, "cc"),
        subject=_clean(_header(message, "subject"))[:998],
        text=text,
        html=html,
        smtp_message_id=message_id or f"<{uuid.uuid4()}@{hostname}>",
        in_reply_to=_first_msgid(_header(message, "in-reply-to")),
        references=_MSGID.findall(_header(message, "references"))[-MAX_REFERENCES:],
        attachments=attachments,
        raw=raw,
        date=_date(_header(message, "date")),
        headers=_kept_headers(message),
    )


def _header(message: Message, name: str) -> str:
    """One header as text; a header the policy cannot parse falls back to its raw value."""
    try:
        value = message.get(name)
    except Exception:
        value = None
        for key, raw_value in message.raw_items():
            if key.lower() == name:
                value = raw_value
                break
    if value is None:
        return ""
    try:
        text = str(value)
    except Exception:
        text = repr(value)
    return text[:MAX_HEADER_CHARS]


def _clean(text: str) -> str:
    return _CONTROL.sub("", text).replace("\r", " ").replace("\n", " ").strip()


def _bare(address: str) -> str:
    address = _clean(address).strip("<>").lower()
    return address if "@" in address and " " not in address else ""


def _sender(message: Message, envelope_sender: str) -> tuple[str, str]:
    name, address = parseaddr(_header(message, "from"))
    bare = _bare(address)
    if not bare:
        return _clean(name), _bare(envelope_sender) or _clean(envelope_sender).lower()
    return _clean(name), bare


def _addresses(message: Message, name: str) -> list[str]:
    values = []
    try:
        values = [_header(message, name)] if name in message else []
    except Exception:
        values = []
    found = []
    for _, address in getaddresses(values):
        bare = _bare(address)
        if bare and bare not in found:
            found.append(bare)
    return found


def _first_msgid(value: str) -> str | None:
    match = _MSGID.search(value)
    return match.group(0)[:998] if match else None


def _date(value: str) -> str | None:
    if not value:
        return None
    try:
        return iso(parsedate_to_datetime(value))
    except Exception:
        return None


def _kept_headers(message: Message) -> dict[str, str]:
    headers = {}
    for name in ("reply-to", "auto-submitted", "list-id"):
        value = _clean(_header(message, name))
        if value:
            headers[name] = value
    return headers


def _text(part: Message) -> str:
    """A text part decoded by its declared charset, else UTF-8 (undeclared 8-bit mail), else Latin-1."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        return str(part.get_payload()).replace("\x00", "")
    for charset in (part.get_content_charset(), "utf-8"):
        if not charset:
            continue
        try:
            return payload.decode(charset).replace("\x00", "")
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("latin-1").replace("\x00", "")


def _binary(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    return str(part.get_payload()).encode("utf-8", "replace")


def _filename(part: Message) -> str:
    try:
        return part.get_filename() or ""
    except Exception:
        return ""


def _is_attachment(part: Message) -> bool:
    try:
        disposition = part.get_content_disposition()
    except Exception:
        disposition = None
    if disposition == "attachment" or _filename(part):
        return True
    return part.get_content_maintype() not in ("text", "multipart", "message")


def _bodies(message: Message) -> tuple[str, str | None, list[IncomingAttachment]]:
    """The first text/plain and text/html bodies, and every other leaf part as an attachment."""
    text: str | None = None
    html: str | None = None
    attachments: list[IncomingAttachment] = []
    try:
        parts = list(message.walk())
    except Exception:
        parts = [message]
    for part in parts:
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        if _is_attachment(part):
            attachments.append(IncomingAttachment(
                filename=safe_filename(_filename(part)), mime_type=content_type, content=_binary(part),
            ))
            continue
        body = _text(part)
        if content_type == "text/html":
            html = body if html is None else html
        elif text is None:
            text = body
    return text or "", html, attachments
