"""Helpers for the mail tests: inboxes through the API, messages straight into the store."""

from __future__ import annotations

import email
import itertools
from email import policy
from email.message import EmailMessage

import httpx

from backend.mail.model import IncomingAttachment, IncomingMessage

_names = itertools.count()


def make_inbox(api: httpx.Client, local_part: str | None = None, **body: object) -> dict:
    """A new inbox on the shared domain (unique local part unless one is given)."""
    response = api.post("/v1/inboxes", json={"local_part": local_part or f"box{next(_names)}", **body})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def ingest(running, inbox_id: str, **fields: object) -> tuple[dict, bool]:
    """Deliver one inbound message into an inbox as SMTP ingest would."""
    services = running.server.services
    fields.setdefault("sender", "customer@example.net")
    fields.setdefault("to", [])
    attachments = [IncomingAttachment(*a) for a in fields.pop("attachments", [])]  # type: ignore[union-attr]
    msg = IncomingMessage(attachments=attachments, **fields)  # type: ignore[arg-type]

    def work() -> tuple[dict, bool]:
        inbox = services.domains.get_inbox_any(inbox_id)
        return services.mail.ingest(inbox, msg)

    return running.run(work)


def ingest_many(running, inbox_id: str, messages: list[dict]) -> list[tuple[dict, bool]]:
    services = running.server.services

    def work() -> list[tuple[dict, bool]]:
        inbox = services.domains.get_inbox_any(inbox_id)
        return services.mail.ingest_many([(inbox, IncomingMessage(**m)) for m in messages])

    return running.run(work)


def raw_of(running, message_id: str) -> EmailMessage:
    """The stored RFC 5322 bytes of a message, parsed (what the outbound worker transmits)."""
    services = running.server.services

    def read() -> bytes:
        row = services.database.one("SELECT org_id, raw_sha256 FROM messages WHERE id = ?", (message_id,))
        return services.blobs.get(row["org_id"], row["raw_sha256"])

    return email.message_from_bytes(running.run(read), policy=policy.default)  # type: ignore[return-value]
