"""Opaque keyset cursors: the last row's sort key, bound to the list's filter and order.

A cursor from another list (other filter or order) or a damaged one is a 400, never silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..http.errors import BadRequest
from ..util import parse_iso


def encode_cursor(scope: str, order: str, key: tuple[Any, Any]) -> str:
    """An opaque cursor (URL-safe base64 JSON) for the row after which the next page starts."""
    payload = json.dumps({"s": scope, "o": order, "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, scope: str, order: str, second: type) -> tuple[str, Any] | None:
    """The keyset `(timestamp, id)` a cursor carries, or None when there is no cursor."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        first, last = payload["k"]
        valid = isinstance(first, str) and type(last) is second and isinstance(payload["s"], str)
        if valid:
            parse_iso(first)
    except (ValueError, OverflowError, binascii.Error, KeyError, TypeError, UnicodeDecodeError):
        raise BadRequest("cursor is malformed; pass next_cursor from the previous page unchanged") from None
    if not valid:
        raise BadRequest("cursor is malformed; pass next_cursor from the previous page unchanged")
    if payload["s"] != scope or payload.get("o") != order:
        raise BadRequest("cursor belongs to a different list (filter or order changed)")
    return first, last


def by_insertion(row: Any) -> tuple[str, int]:
    """The keyset of a newest-first list whose ties keep insertion order: `(created_at, rowid)`."""
    return row["created_at"], row["rowid"]


def page(rows: list, limit: int, scope: str, order: str, key: Any) -> tuple[list, str | None, bool]:
    """Split `limit + 1` fetched rows into the page, the next cursor and `has_more`."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(scope, order, key(rows[-1])) if has_more and rows else None
    return rows, next_cursor, has_more
