"""Pure helpers for showing mail: display-safe text, dates, addresses, sizes, reply and forward text."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")

MAX_LINE_CHARS = 500
"""One-line values (subjects, names, file names) are cut here: a toast or a list cell has no use for more."""

# Escape sequences (ECMA-48) with their payloads, so nothing of them reaches the screen. String
# sequences (OSC, DCS, SOS, PM, APC) run to BEL or ST; an unterminated one ends at the line's end.
_STRING_SEQUENCE = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\n]*?(?:\x07|\x1b\\|\x9c|(?=\n)|\Z)"
_CONTROL_SEQUENCE = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
_OTHER_ESCAPE = r"\x1b[ -/]*[0-~]"
_ESCAPES = re.compile(f"{_STRING_SEQUENCE}|{_CONTROL_SEQUENCE}|{_OTHER_ESCAPE}")
_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029]")
# C0 and C1 controls except tab and newline, DEL, and lone surrogates (which no terminal can encode).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Embeddings, overrides and isolates reorder the text around them (the "Trojan Source" trick).
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_SUSPICIOUS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean_text(value: str | None) -> str:
    """`value` safe to put on a terminal: no escape sequences or control characters, bidi controls
    shown as `⟨U+202E⟩`; tabs and line breaks stay (every kind of line break becomes `\\n`)."""
    if not value:
        return ""
    if not _SUSPICIOUS.search(value):
        return value
    value = _LINE_BREAKS.sub("\n", _ESCAPES.sub("", value))
    value = _CONTROLS.sub(lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else "", value)
    return _BIDI.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", value)


def clean_line(value: str | None, limit: int = MAX_LINE_CHARS) -> str:
    """`clean_text` for one-line places (subjects, names, cells): breaks and tabs become spaces,
    and anything past `limit` characters becomes `…`."""
    text = clean_text(value)
    if "\n" in text or "\t" in text:
        text = text.replace("\n", " ").replace("\t", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_data(value: Any) -> Any:
    """Every string in a decoded JSON value (keys too) passed through `clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_data(k): clean_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_data(item) for item in value]
    return value


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp from the API as an aware datetime (None when missing or malformed)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def compact_date(value: str | None, now: datetime) -> str:
    """`14:30` today, `Mar 15` this year, `2024-03-15` before: what fits a thread list column."""
    moment = parse_time(value)
    if moment is None:
        return ""
    moment = moment.astimezone(now.tzinfo or UTC)
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    if moment.year == now.year:
        return moment.strftime("%b %d")
    return moment.strftime("%Y-%m-%d")


def full_date(value: str | None) -> str:
    moment = parse_time(value)
    return moment.strftime("%a, %d %b %Y %H:%M UTC") if moment else ""


def human_size(size: int | None) -> str:
    """Bytes as `512 B`, `1.2 KB`, `3.4 MB`."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def split_addresses(text: str) -> list[str]:
    """The bare addresses in a comma-separated field; `Name <a@b>` forms are accepted."""
    return [addr.strip() for _, addr in getaddresses([text]) if addr.strip()]


def invalid_addresses(text: str) -> list[str]:
    """The entries of an address field that are not plausible mail addresses."""
    entries = [part.strip() for part in re.split(r"[,;]", text) if part.strip()]
    bad = []
    for entry in entries:
        parsed = getaddresses([entry])
        address = parsed[0][1] if parsed else ""
        if not ADDRESS_RE.match(address):
            bad.append(entry)
    return bad


def prefixed_subject(prefix: str, subject: str) -> str:
    """`Re: x` / `Fwd: x`, without stacking a prefix the subject already has."""
    subject = subject.strip()
    if subject.lower().startswith(prefix.lower() + ":"):
        return subject
    return f"{prefix}: {subject}" if subject else f"{prefix}:"


def quote_text(body: str, sender: str, when: str | None) -> str:
    """The original body quoted with `> ` under an attribution line, as a reply starts."""
    attribution = f"On {full_date(when)}, {sender} wrote:" if when else f"{sender} wrote:"
    quoted = "\n".join(f"> {line}" if line else ">" for line in body.rstrip().splitlines())
    return f"\n\n{attribution}\n{quoted}\n"


def forward_text(body: str, sender: str, subject: str, when: str | None) -> str:
    """The original message under a forwarded-message header block."""
    return (
        "\n\n---------- Forwarded message ----------\n"
        f"From: {sender}\nDate: {full_date(when)}\nSubject: {subject}\n\n{body.rstrip()}\n"
    )


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
    SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("\n• ")
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith("#"):
                self.parts.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body: paragraphs kept, tags and scripts dropped."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def short_address(address: str) -> str:
    """The local part of an address for narrow columns, with its domain when it differs."""
    return address.split("@", 1)[0] if "@" in address else address
