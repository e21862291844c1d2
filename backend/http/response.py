"""Responses: a status, headers and either bytes or an async stream of chunks (Server-Sent Events)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


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

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> "Response":
        return cls(dumps(value), status, headers)

    @classmethod
    def error(cls, message: str, status: int, headers: dict[str, str] | None = None) -> "Response":
        return cls(dumps({"error": message}), status, headers)

    @classmethod
    def streaming(
        cls, chunks: AsyncIterator[bytes], content_type: str, headers: dict[str, str] | None = None
    ) -> "Response":
        response = cls(b"", 200, headers, content_type)
        response.stream = chunks
        return response

    def head_bytes(self, keep_alive: bool, head_only: bool = False) -> bytes:
        reason = HTTPStatus(self.status).phrase if self.status in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        if self.content_type:
            lines.append(f"content-type: {self.content_type}")
        if self.stream is not None:
            lines.append("transfer-encoding: chunked")
            lines.append("cache-control: no-cache")
        else:
            lines.append(f"content-length: {len(self.body)}")
        for name, value in self.headers.items():
            lines.append(f"{name}: {value}")
        lines.append("connection: keep-alive" if keep_alive else "connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
