"""What a webhook POSTs: the `email.received` payload and its signature (CONTRACT.md §6)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from typing import Any

INBOUND_EVENTS = ("email.received", "inbound")


def wants_inbound(events: list[str] | None) -> bool:
    """`email.received` and `inbound` are synonyms; an inbox without an events list gets inbound mail."""
    return not events or any(e in INBOUND_EVENTS for e in events)


# Delivery outcomes an inbox can subscribe to: the SDK's short names and the dotted ones both work.
OUTCOMES = {
    "sent": ("delivery", "email.sent"),
    "delivered": ("delivery", "email.delivered"),
    "bounced": ("bounce", "email.bounced"),
    "failed": ("bounce", "email.bounced"),
}


def outcome_payload(event: dict[str, Any]) -> tuple[str, str] | None:
    """For a delivery event of an inbox with a webhook: the webhook's event name and payload text,
    or None when the inbox did not subscribe to this outcome."""
    names = OUTCOMES.get(event["event_type"])
    subscribed = event.get("webhook_events") or []
    if names is None or not any(name in subscribed for name in names):
        return None
    short, dotted = names
    payload = {
        "event": short,
        "type": dotted,
        "domainId": event["domain_id"],
        "inboxId": event["inbox_id"],
        "inboxAddress": event["address"],
        "message_id": event["message_id"],
        "event_id": event["id"],
        "event_type": event["event_type"],
        "recipient": event["recipient"],
        "detail": event["detail"],
        "timestamp": event["created_at"],
    }
    return dotted, encode(payload)


def attachment_rows(conn: sqlite3.Connection, org_id: str, attachment_ids: list[str]) -> list[dict[str, Any]]:
    """Metadata of a message's attachments, in the message's order (one query)."""
    if not attachment_ids:
        return []
    marks = ",".join("?" * len(attachment_ids))
    rows = conn.execute(
        f"SELECT id, filename, mime_type, size FROM attachments WHERE org_id = ? AND id IN ({marks})",
        (org_id, *attachment_ids),
    ).fetchall()
    found = {
        r["id"]: {"attachment_id": r["id"], "filename": r["filename"], "mime_type": r["mime_type"],
                  "size": r["size"]}
        for r in rows
    }
    return [found[i] for i in attachment_ids if i in found]


def _sender(message: dict[str, Any]) -> str:
    for participant in message.get("participants") or []:
        if participant.get("role") == "sender":
            return participant.get("identity", "")
    return ""


def inbound_payload(inbox: dict[str, Any], message: dict[str, Any], attachments: list[dict]) -> dict[str, Any]:
    """The superset both the SDK's docstrings (flat fields) and nested consumers (`message`) read."""
    metadata = message.get("metadata") or {}
    return {
        "event": "inbound",
        "type": "email.received",
        "domainId": inbox["domain_id"],
        "inboxId": inbox["id"],
        "inboxAddress": inbox["address"],
        "thread_id": message["thread_id"],
        "message_id": message["message_id"],
        "sender": _sender(message),
        "subject": metadata.get("subject") or "",
        "text": message.get("content") or "",
        "html": message.get("content_html"),
        "created_at": metadata.get("created_at") or message.get("created_at"),
        "message": message,
        "attachments": attachments,
        "authentication": message.get("authentication"),
        "labels": message.get("labels") or [],
        "extracted": message.get("extracted"),
        "extractedData": None,
    }


def encode(payload: dict[str, Any]) -> str:
    """The exact text stored and sent; signatures are computed over its UTF-8 bytes."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def signature(secret: str, timestamp_ms: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of `"{timestamp}."` + body, keyed with the whole secret string."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}.".encode() + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()
