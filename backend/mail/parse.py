"""Raw RFC 5322 bytes from strangers → `IncomingMessage`, decoding what can be decoded and never raising.

Parsing is on the SMTP hot path, so it uses the `email` package's fast `compat32` parser (a tenth of
`policy.default`'s cost per message) and decodes only what is stored: encoded-word headers, addresses,
text and HTML bodies by their charset, attachments. Every step that can trip over a broken message
(bad boundaries, unknown charsets, 8-bit headers, NUL bytes) falls back to a lossy but safe value, so
an accepted message is always stored.
"""

from __future__ import annotations

import re
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from ..store.mail_reads import safe_filename
from ..util import iso
from .compose import new_smtp_message_id
from .content_type import safe_content_type
from .model import IncomingAttachment, IncomingMessage

_MSGID = re.compile(r"<[^<>\s]+>")
# What the `email` feed parser takes for a header line (its `headerRE`), on bytes.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Headers longer than this are cut: a legitimate header is far shorter, and a huge one is an attack.
MAX_HEADER_CHARS = 16_000
MAX_REFERENCES = 100
# Parts beyond this stay in the raw message only: thousands of tiny parts are an attack, not mail.
MAX_ATTACHMENTS = 500


def parse_message(raw: bytes, envelope_sender: str = "", hostname: str = "localhost") -> IncomingMessage:
    """Decode a raw message; a missing Message-ID is generated on `hostname`."""
    raw = raw.replace(b"\x00", b"")
    return from_parsed(single_part(raw) or full_parse(raw), raw, envelope_sender, hostname)


def full_parse(raw: bytes) -> Message:
    """`raw` as the `compat32` parser reads it, every MIME part included."""
    try:
        return BytesParser(policy=policy.compat32).parsebytes(raw)
    except Exception:  # the parser is lenient, but a pathological input must not stop ingest
        message = Message()
        message.set_payload(raw.decode("utf-8", "replace"), "utf-8")
        return message


def single_part(raw: bytes) -> Message | None:
    """What `full_parse` gives for a message that is not multipart, without its walk over every body
    line; None for any other message, or when the header block is not plainly CRLF-delimited.

    The parser splits lines at CR, LF and CRLF and ends the headers at the first line that is not one
    (`_HEADER_LINE`); where that line is the first empty one after CRLF-only lines (and no mbox
    `From ` line follows the first), parsing the header block alone yields the same headers, and a
    body that is not multipart or `message/*` is the rest of the bytes as they are.
    """
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = raw[:end].split(b"\r\n")
    if any(b"\r" in line or b"\n" in line or not _HEADER_LINE.match(line) for line in lines):
        return None
    if any(line.startswith(b"From ") for line in lines[1:]):
        return None  # an mbox `From ` line that is not the first: the parser may take it for the body
    try:
        message = BytesParser(policy=policy.compat32).parsebytes(raw[:end + 4], headersonly=True)
        if message.get_content_maintype() in ("multipart", "message"):
            return None
    except Exception:  # noqa: BLE001 - whatever trips the parser here, the full parse handles
        return None
    message.set_payload(raw[end + 4:].decode("ascii", "surrogateescape"))
    return message


def from_parsed(message: Message, raw: bytes, envelope_sender: str, hostname: str) -> IncomingMessage:
    """The stored fields of a parsed message."""
    headers = _raw_headers(message)
    name, sender = _sender(headers.get("from", ""), envelope_sender)
    text, html, attachments = _bodies(message)
    message_id = _first_msgid(headers.get("message-id", ""))
    return IncomingMessage(
        sender=sender,
        sender_name=name or None,
        to=_addresses(headers.get("to", "")),
        cc=_addresses(headers.get("cc", "")),
        subject=_clean(decoded(headers.get("subject", "")))[:998],
        text=text,
        html=html,
        smtp_message_id=message_id or new_smtp_message_id(hostname),
        in_reply_to=_first_msgid(headers.get("in-reply-to", "")),
        references=_MSGID.findall(headers.get("references", ""))[-MAX_REFERENCES:],
        attachments=attachments,
        raw=raw,
        date=_date(headers.get("date", "")),
        headers={k: _clean(decoded(headers[k])) for k in ("reply-to", "auto-submitted", "list-id") if k in headers},
    )


def _raw_headers(message: Message) -> dict[str, str]:
    """The first value of each header as text; raw 8-bit bytes are read as UTF-8, else Latin-1."""
    found: dict[str, str] = {}
    for key, value in message.raw_items():
        key = str(key).lower()
        if key in found:
            continue
        text = str(value)[:MAX_HEADER_CHARS]
        if not text.isascii():
            data = text.encode("utf-8", "surrogateescape")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
        found[key] = text
    return found


def decoded(value: str) -> str:
    """RFC 2047 encoded words decoded; a malformed or unknown-charset word stays as it was."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _clean(text: str) -> str:
    return _CONTROL.sub("", text).replace("\r", " ").replace("\n", " ").strip()


def _bare(address: str) -> str:
    address = _clean(address).strip("<>").lower()
    return address if "@" in address and " " not in address else ""


def _sender(value: str, envelope_sender: str) -> tuple[str, str]:
    name, address = parseaddr(value)
    name = _clean(decoded(name))
    bare = _bare(address)
    if not bare:
        return name, _bare(envelope_sender) or _clean(envelope_sender).lower()
    return name, bare


def _addresses(value: str) -> list[str]:
    found: list[str] = []
    for _, address in getaddresses([value]) if value else []:
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
        return decoded(str(part.get_filename() or ""))
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
            if len(attachments) >= MAX_ATTACHMENTS:
                continue
            attachments.append(IncomingAttachment(
                filename=safe_filename(_filename(part)), mime_type=safe_content_type(content_type),
                content=_binary(part),
            ))
            continue
        body = _text(part)
        if content_type == "text/html":
            html = body if html is None else html
        elif text is None:
            text = body
    return text or "", html, attachments
