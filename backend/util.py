"""Small helpers every layer uses: identifiers and timestamps in the API's formats."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and `Z`, as every timestamp on the wire."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(utcnow())


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 date or date-time; naive values are taken as UTC. Raises ValueError."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-14:00 lies past year 9999 in UTC
        raise ValueError(f"{value!r} is out of range") from exc


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_thread_id() -> str:
    return f"thread_{uuid.uuid4()}"


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def new_attachment_id() -> str:
    return secrets.token_hex(16)


def new_prefixed(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"
