"""The request object handlers see: parsed target, lower-cased headers, the whole body.

A large body arrives spooled to a temporary file (`body_file`) instead of `body`; `read_body` gives
either as bytes, and is to be called off the event loop for routes that accept large bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qs, unquote

from .errors import BadRequest

MAX_JSON_DEPTH = 64


def _depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""
    client: tuple[str, int] | None = None
    path: str = ""
    query_string: str = ""
    path_params: dict[str, str] = field(default_factory=dict)
    _query: dict[str, list[str]] | None = None
    body_file: IO[bytes] | None = None
    admitted: Any = None
    """What the app decided when the head arrived (route, caller), so it is not decided twice."""

    def __post_init__(self) -> None:
        raw_path, _, self.query_string = self.target.partition("?")
        self.path = unquote(raw_path) or "/"

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            try:
                self._query = parse_qs(self.query_string, keep_blank_values=True, errors="strict")
            except (UnicodeDecodeError, ValueError) as exc:
                raise BadRequest("Query string is not valid UTF-8") from exc
        return self._query

    def arg(self, name: str, *aliases: str) -> str | None:
        """First value of a query parameter (or of its first alias present), else None."""
        for key in (name, *aliases):
            values = self.query.get(key)
            if values:
                return values[0]
        return None

    def read_body(self) -> bytes:
        """The whole body, read back from its spool file when it was too large to keep in memory."""
        if self.body_file is None:
            return self.body
        self.body_file.seek(0)
        return self.body_file.read()

    def json(self) -> Any:
        """The body as JSON. An empty body reads as `{}` (clients POST empty bodies with a JSON type)."""
        body = self.read_body()
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except UnicodeDecodeError as exc:
            raise BadRequest("Request body is not valid UTF-8") from exc
        except RecursionError as exc:
            raise BadRequest("Request body JSON is nested too deeply") from exc
        except ValueError as exc:
            raise BadRequest(f"Malformed JSON body: {exc}") from exc
        if not _depth_ok(value):
            raise BadRequest("Request body JSON is nested too deeply")
        return value

    def json_object(self) -> dict[str, Any]:
        value = self.json()
        if not isinstance(value, dict):
            raise BadRequest("Request body must be a JSON object")
        return value
