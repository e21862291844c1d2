"""Pure helpers for showing mail: display-safe text, dates, addresses, sizes, reply and forward text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
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


def compact_date(value: str | None, now: datetime, zone: tzinfo | None = None) -> str:
    """`14:30` today, `Mar 15` this year, `2024-03-15` before, in `zone` (None: the local time zone,
    which `TZ` sets): what fits a thread list column."""
    moment = parse_time(value)
    if moment is None:
        return ""
    moment, now = moment.astimezone(zone), now.astimezone(zone)
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    if moment.year == now.year:
        return moment.strftime("%b %d")
    return moment.strftime("%Y-%m-%d")


def full_date(value: str | None, zone: tzinfo | None = None) -> str:
    """`Sun, 15 Mar 2026 13:00 CET` in `zone` (None: the local time zone)."""
    moment = parse_time(value)
    if moment is None:
        return ""
    moment = moment.astimezone(zone)
    return moment.strftime("%a, %d %b %Y %H:%M ") + (moment.tzname() or moment.strftime("%z"))


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


def quote_text(body: str, sender: str, when: str | None, zone: tzinfo | None = None) -> str:
    """The original body quoted with `> ` under an attribution line, as a reply starts."""
    attribution = f"On {full_date(when, zone)}, {sender} wrote:" if when else f"{sender} wrote:"
    quoted = "\n".join(f"> {line}" if line else ">" for line in body.rstrip().splitlines())
    return f"\n\n{attribution}\n{quoted}\n"


def with_signature(body: str, signature: str) -> str:
    """`body` with the signature under a `-- ` line, above any quoted or forwarded text."""
    signature = signature.strip("\n")
    for separator in ("-- \n", "--\n"):  # a signature file that brings its own separator
        signature = signature.removeprefix(separator)
    block = "\n\n-- \n" + signature
    if not signature.strip() or block in body:
        return body
    if body.startswith("\n\n"):  # a reply or forward: you write at the top, above the original
        return block + body
    return body.rstrip("\n") + block + "\n" if body.strip() else block


def forward_text(body: str, sender: str, subject: str, when: str | None,
                 zone: tzinfo | None = None) -> str:
    """The original message under a forwarded-message header block."""
    return (
        "\n\n---------- Forwarded message ----------\n"
        f"From: {sender}\nDate: {full_date(when, zone)}\nSubject: {subject}\n\n{body.rstrip()}\n"
    )


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
    SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.open_links: list[str] = []
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("\n• ")
        if tag == "a":
            self.open_links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self.open_links:
            href = self.open_links.pop().strip()
            if href and not href.startswith("#"):
                if href not in self.targets:
                    self.targets.append(href)
                self.parts.append(f" [{self.targets.index(href) + 1}]")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body: paragraphs kept, tags and scripts dropped, each link
    as `text [1]` with the numbered targets listed at the end."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if parser.targets:
        text += "\n\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(parser.targets, 1))
    return text


URL_RE = re.compile(r"\b(?:https?|mailto|ftp):[^\s<>\"'\])]+", re.IGNORECASE)


def find_links(text: str) -> list[str]:
    """The distinct URLs in a text, in order of first appearance (trailing punctuation dropped)."""
    found = (m.group().rstrip(".,;:!?") for m in URL_RE.finditer(text))
    return list(dict.fromkeys(found))


def named_address(address: str, name: str | None) -> str:
    """`Name <address>` when the name is known, else the address."""
    return f"{name} <{address}>" if name and name != address else address


def short_address(address: str) -> str:
    """The local part of an address for narrow columns, with its domain when it differs."""
    return address.split("@", 1)[0] if "@" in address else address
