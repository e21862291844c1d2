"""Turning message bodies into plain text: HTML to readable text, and the one-line snippet of a thread."""

from __future__ import annotations

import re
from html.parser import HTMLParser

SNIPPET_LENGTH = 200
_BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                     "pre", "table", "ul", "ol", "hr", "section", "article", "header", "footer"})
_HIDDEN = frozenset({"script", "style", "head", "title", "template"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body: tags dropped, blocks on their own lines."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(collector.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def snippet(text: str, html: str | None = None, length: int = SNIPPET_LENGTH) -> str:
    """The first `length` characters of the body on one line (from HTML when there is no text)."""
    source = text if text and not text.isspace() else (html_to_text(html) if html else "")
    # Only the words of a prefix long enough for the snippet are joined, not those of a whole body.
    window = 2 * length
    while window < len(source):
        words = source[:window].split()
        head = " ".join(words[:-1])  # the last word may be cut by the window
        if len(head) > length:
            return head[: length - 1].rstrip() + "…"
        window *= 4
    flat = " ".join(source.split())
    return flat if len(flat) <= length else flat[: length - 1].rstrip() + "…"
