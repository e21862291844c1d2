"""Responses: a status, headers and either bytes or an async stream of chunks (Server-Sent Events)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

import pydantic_core

REASONS = {status.value: status.phrase for status in HTTPStatus}

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf'{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|"[\t\x20\x21\x23-\x5b\x5d-\x7e]*"))*')
_HEADER_NAME = re.compile(_TOKEN, re.ASCII)
_FOLD = re.compile(r"\r?\n[ \t]+")
_UNSAFE = re.compile(r"[^\x20-\x7e\t]")
SAFE_CONTENT_TYPES = {"application/json", "text/event-stream", "application/octet-stream", ""}
FALLBACK_CONTENT_TYPE = "application/octet-stream"
_NAMES_SEEN: set[str] = set()
"""Header names already found to be tokens; names come from our code, so the set stays small."""


def _header_name_ok(name: str) -> bool:
    if name in _NAMES_SEEN:
        return True
    if not _HEADER_NAME.fullmatch(name):
        return False
    if len(_NAMES_SEEN) < 1024:
        _NAMES_SEEN.add(name)
    return True


def header_value(value: object) -> str:
    """`value` as a field value that cannot break the head: folds unfolded, CR/LF/other controls and
    non-ASCII replaced by `?` (whoever needs non-ASCII, like a file name, encodes it per RFC 5987)."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub("?", _FOLD.sub(" ", text))


def media_type(value: str) -> str:
    """A Content-Type fit for the head: well-formed ASCII `type/subtype[; param=value]`, else octet-stream."""
    if value in SAFE_CONTENT_TYPES or _MEDIA_TYPE.fullmatch(value):
        return value
    return FALLBACK_CONTENT_TYPE


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; pydantic-core's encoder is about 4x faster than the stdlib's on our lists."""
    try:
        return pydantic_core.to_json(value, fallback=str)
    except pydantic_core.PydanticSerializationError:
        # A lone surrogate (from a JSON body's "\ud800" escape) is not UTF-8: escape it instead.
        return json.dumps(value, separators=(",", ":"), default=str).encode()


Push = Callable[[bytes], bool]
"""Writes one chunk of a streaming response at once, from outside its iterator; False, writing nothing,
when the connection cannot take it now (gone, or its client is not reading)."""


class Response:
    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.body = body
        self.status = status
        self.headers = dict(headers or {})
        self.content_type = content_type
        self.stream: AsyncIterator[bytes] | None = None
        self.on_push: Callable[[Push | None], None] | None = None
        """Given the connection's `Push` while the stream is written (None once it ended), so the stream's
        producer can write chunks as they come instead of waking the iterator for each."""

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(dumps(value), status, headers)

    @classmethod
    def error(cls, message: str, status: int, headers: dict[str, str] | None = None,
              extra: dict | None = None) -> Response:
        return cls(dumps({"error": message, **(extra or {})}), status, headers)

    @classmethod
    def streaming(
        cls, chunks: AsyncIterator[bytes], content_type: str, headers: dict[str, str] | None = None,
        on_push: Callable[[Push | None], None] | None = None,
    ) -> Response:
        response = cls(b"", 200, headers, content_type)
        response.stream = chunks
        response.on_push = on_push
        return response

    def head_bytes(self, keep_alive: bool, head_only: bool = False) -> bytes:
        """Status line and headers; whatever the values hold, the result is ASCII with no stray CR/LF."""
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, '')}"]
        content_type = self.content_type
        if content_type:
            if content_type not in SAFE_CONTENT_TYPES:
                content_type = media_type(content_type)
            lines.append(f"content-type: {content_type}")
        if self.stream is not None:
            lines.append("transfer-encoding: chunked")
            lines.append("cache-control: no-cache")
        else:
            lines.append(f"content-length: {len(self.body)}")
        for name, value in self.headers.items():
            if _header_name_ok(name):
                lines.append(f"{name}: {header_value(value)}")
        lines.append("connection: keep-alive" if keep_alive else "connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
