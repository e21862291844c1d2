"""Codes and links for agents: the one-time codes and web links a message carries, found by rules, no model.

`extract(subject, text, html)` returns `{"codes": [...], "links": [{"url", "text"}, ...]}`.

- Only the newest part of a message counts: lines quoted with `>`, everything after a reply header
  ("On … wrote:", "-----Original Message-----", Outlook's "From: … Sent:") and, in HTML, `<blockquote>`
  and Gmail's quote block are left out, so a reply quoting an old code never yields it. A forwarded
  message stays in, and a message that is nothing but quotation is read whole.
- Codes: see `codes.py`. The subject is read with the body; HTML, when there is some, is read as
  the text a person sees (the text part only when the HTML gives no code).
- Links are `http`/`https` only (what an agent can follow; `mailto:`, `tel:`, `javascript:` and
  relative links are dropped), from `<a href>` with their anchor text and from bare URLs in the text,
  in order of appearance, one entry per URL, at most `MAX_LINKS`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from .codes import find_codes
from .render import _BLOCKS as BLOCK_TAGS
from .render import _HIDDEN as HIDDEN_TAGS

MAX_LINKS = 50
MAX_URL_CHARS = 2048
MAX_LINK_TEXT = 200
# Codes and links sit near the top of a message; reading further only costs time on huge bodies.
MAX_TEXT_CHARS = 64_000
MAX_HTML_CHARS = 256_000

# The line that opens a quoted reply, found by how it ends ("… wrote:") or by a fixed marker.
_ATTRIBUTION = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|写道|寫道|пишет|написала?)[ \t]?[:：][ \t]*$",
    re.MULTILINE,
)
_ORIGINAL = re.compile(
    r"-{2,} ?(?:original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht|mensagem original) ?-{2,}"
)
_SENT_LINE = re.compile(r"\n(?:sent|gesendet|envoyé|enviado|inviato|verzonden|date|datum) ?:")
_FROM_LINE = re.compile(r"(?:from|von|de|da|van) ?:")
_FORWARDED = re.compile(
    r"forward|weitergeleitet|transféré|reenviado|inoltrato|doorgestuurd|encaminhad|转发|轉寄|転送|전달|пересланн"
)
_TEXT_URL = re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f{}|\\^\[\]]+", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_LINE_SPACES = re.compile(r"[ \t\r\f\v]+")
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix")


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _reply_header(low: str) -> int | None:
    """Where the quoted part of a plain-text body begins (`low` is the body lower-cased), if it has one."""
    starts = []
    found = _ATTRIBUTION.search(low)
    if found:
        starts.append(_line_start(low, found.start()))
    found = _ORIGINAL.search(low)
    if found:
        starts.append(_line_start(low, found.start()))
    for found in _SENT_LINE.finditer(low):
        previous = _line_start(low, found.start())
        if _FROM_LINE.match(low, previous):
            starts.append(previous)
            break
    for start in sorted(starts):
        if not _FORWARDED.search(low, max(0, start - 120), start):
            return start
    return None


def fresh_text(text: str) -> str:
    """The newest part of a plain-text body: up to the first reply header, without `>` lines."""
    text = text[:MAX_TEXT_CHARS]
    cut = _reply_header(text.lower()) if ":" in text else None
    head = text[:cut] if cut is not None else text
    if ">" in head:
        head = "\n".join(line for line in head.split("\n") if not line.lstrip().startswith(">"))
    return head if head.strip() else text


def clean_url(raw: str) -> str | None:
    """An absolute http(s) URL as it can be followed, or None (other schemes, too long, malformed)."""
    url = "".join(raw.split())
    if len(url) > MAX_URL_CHARS or not url[:8].lower().startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return url


def _trim_text_url(url: str) -> str:
    """A URL found in prose without the punctuation that ends the sentence around it."""
    while url and url[-1] in ".,;:!?'\"»”>":
        url = url[:-1]
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1]
    return url


class _HtmlReader(HTMLParser):
    """One pass over an HTML body: its visible text and its links, each marked as quoted or not."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fresh: list[str] = []
        self.quoted: list[str] = []
        self.links: list[tuple[str, str, bool]] = []
        self.hidden = 0
        self.quote_tag: str | None = None
        self.quote_depth = 0
        self.href: str | None = None
        self.anchor: list[str] = []
        self.alt = ""

    @property
    def in_quote(self) -> bool:
        return self.quote_tag is not None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_TAGS:
            self.hidden += 1
            return
        if self.quote_tag == tag:
            self.quote_depth += 1
        elif self.quote_tag is None and (tag == "blockquote" or (tag == "div" and self._quote_class(attrs))):
            self.quote_tag, self.quote_depth = tag, 1
        if tag == "a":
            self.finish_anchor()
            self.href = next((v for k, v in attrs if k == "href" and v), None)
        elif tag == "img" and self.href is not None and not self.alt:
            self.alt = next((v for k, v in attrs if k == "alt" and v), "")
        if tag in BLOCK_TAGS:
            (self.quoted if self.in_quote else self.fresh).append("\n")

    @staticmethod
    def _quote_class(attrs: list[tuple[str, str | None]]) -> bool:
        classes = next((v for k, v in attrs if k == "class" and v), "")
        return any(name in classes for name in _QUOTE_CLASSES)

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
            return
        if tag == "a":
            self.finish_anchor()
        if tag in BLOCK_TAGS:
            (self.quoted if self.in_quote else self.fresh).append("\n")
        if self.quote_tag == tag:
            self.quote_depth -= 1
            if self.quote_depth <= 0:
                self.quote_tag = None

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        (self.quoted if self.in_quote else self.fresh).append(data)
        if self.href is not None and len(self.anchor) < 50:
            self.anchor.append(data)

    def finish_anchor(self) -> None:
        if self.href is not None:
            text = _WHITESPACE.sub(" ", "".join(self.anchor)).strip() or self.alt.strip()
            self.links.append((self.href, text[:MAX_LINK_TEXT], self.in_quote))
        self.href, self.anchor, self.alt = None, [], ""

    def close(self) -> None:
        super().close()
        self.finish_anchor()


def _tidy(parts: list[str]) -> str:
    lines = (_LINE_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


class _Links:
    """Links in order of first appearance, one per URL, the first non-empty anchor text kept."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, raw: str, text: str = "") -> None:
        url = clean_url(raw)
        if url is None:
            return
        if url not in self.found:
            if len(self.found) < MAX_LINKS:
                self.found[url] = text
        elif not self.found[url]:
            self.found[url] = text

    def add_text(self, text: str) -> None:
        if "://" not in text:
            return
        for m in _TEXT_URL.finditer(text):
            self.add(_trim_text_url(m.group(0)))

    def as_list(self) -> list[dict[str, str]]:
        return [{"url": url, "text": text} for url, text in self.found.items()]


def extract(subject: str, text: str, html: str | None) -> dict[str, Any]:
    """Codes and links of a message (see the module docstring for the rules)."""
    links = _Links()
    text_fresh = fresh_text(text or "")
    html_fresh = ""
    if html:
        reader = _HtmlReader()
        try:
            reader.feed(html[:MAX_HTML_CHARS])
            reader.close()
        except AssertionError:  # how html.parser refuses a malformed `<!…>`: keep what was read so far
            reader.finish_anchor()
        everything_quoted = not _tidy(reader.fresh) and not any(not q for _, _, q in reader.links)
        html_fresh = fresh_text(_tidy(reader.quoted if everything_quoted else reader.fresh))
        for href, anchor, quoted in reader.links:
            if everything_quoted or not quoted:
                links.add(href, anchor)
    links.add_text(text_fresh)
    codes = find_codes(f"{subject}\n\n{html_fresh}") if html_fresh else []
    if not codes:
        codes = find_codes(f"{subject}\n\n{text_fresh}")
    return {"codes": codes, "links": links.as_list()}
