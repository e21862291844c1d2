"""Our return path (VERP) and RFC 3464 delivery status notifications sent back to it.

Each queued recipient is sent with `MAIL FROM:<bounces+<queue-id>@send.<domain>>`; `send.<domain>` is
the MX the domain publishes for us, so a remote server's later bounce comes back to our listener and
names the exact queue row it is about, without trusting anything in the bounce's body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser

_RETURN_PATH = re.compile(r"^bounces\+(obq_[0-9a-f]{1,64})@send\.(.+)$")


@dataclass
class BounceReport:
    """One recipient a DSN reports as failed."""

    recipient: str
    status: str
    diagnostic: str

    @property
    def detail(self) -> str:
        return " ".join(part for part in (self.status, self.diagnostic) if part) or "Bounce report received"


def return_path(queue_id: str, domain: str) -> str:
    return f"bounces+{queue_id}@send.{domain}"


def parse_return_path(address: str) -> tuple[str, str] | None:
    """(queue id, domain name) when `address` is one of our return paths."""
    found = _RETURN_PATH.match(address.lower())
    return (found[1], found[2]) if found else None


def _field(block: Message, name: str) -> str:
    try:
        value = block.get(name)
    except Exception:
        return ""
    return " ".join(str(value or "").split())


def _address(value: str) -> str:
    """`rfc822; user@host` → `user@host`."""
    return value.split(";", 1)[-1].strip().strip("<>").lower()


def parse_dsn(raw: bytes) -> list[BounceReport] | None:
    """The failed recipients of a `multipart/report; report-type=delivery-status`, or None if it is not one."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        if message.get_content_type() != "multipart/report":
            return None
        if (message.get_param("report-type") or "").lower() != "delivery-status":
            return None
        parts = list(message.walk())
    except Exception:
        return None
    reports: list[BounceReport] = []
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        # The first block describes the whole message; the rest are one per recipient.
        for block in blocks[1:]:
            action = _field(block, "action").lower()
            if action != "failed":
                continue
            recipient = _address(_field(block, "final-recipient") or _field(block, "original-recipient"))
            reports.append(BounceReport(recipient, _field(block, "status"),
                                        _field(block, "diagnostic-code").split(";", 1)[-1].strip()))
    return reports
