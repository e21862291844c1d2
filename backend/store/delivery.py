"""Outbound queue, delivery events and suppressions: what the worker changes and the delivery API reads.

Every transition of a queued recipient is one short transaction that updates the queue row, appends
a delivery event, sets the message's `delivery_status` and, for permanent failures, suppresses the
address. Lists are keyset-paged on `(created_at, rowid)`: ties within a millisecond keep insertion order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..util import new_prefixed, now_iso
from .database import Database
from .leases import CLEAR, Leases

# Outcomes that end a queue row; anything else is retried.
FINAL = ("sent", "bounced", "failed")
# Newest first, ties in insertion order; every list's index ends in `created_at` (and the implicit rowid).
NEWEST_FIRST = " ORDER BY created_at DESC, rowid DESC"
EVENT_TYPES = ("queued", "sent", "delivered", "deferred", "bounced", "complained", "failed")
# The columns of a `QueueItem`, in its field order.
QUEUE_ITEM_SELECT = (
    "SELECT q.id, q.org_id, q.message_id, q.recipient, q.attempts, q.created_at, m.inbox_id, m.domain_id,"
    " m.sender, m.raw_sha256 FROM outbound_queue q JOIN messages m ON m.id = q.message_id"
)


@dataclass
class QueueItem:
    """One recipient of one outbound message, with what the worker needs to send it."""

    id: str
    org_id: str
    message_id: str
    recipient: str
    attempts: int
    created_at: str
    inbox_id: str
    domain_id: str
    sender: str
    raw_sha256: str | None


def suppression_json(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"], "email": row["email"], "reason": row["reason"], "detail": row["detail"],
        "source": row["source"], "inbox_id": row["inbox_id"], "domain_id": row["domain_id"],
        "suppressed_at": row["created_at"], "suppressedAt": row["created_at"],
    }


def event_json(row: sqlite3.Row) -> dict:
    return {
        "event_id": row["id"], "id": row["id"], "message_id": row["message_id"], "event_type": row["event_type"],
        "recipient": row["recipient"], "timestamp": row["created_at"], "detail": row["detail"],
        "inbox_id": row["inbox_id"], "domain_id": row["domain_id"],
        # The names the official CLI's event table reads.
        "type": row["event_type"], "email": row["recipient"], "messageId": row["message_id"],
    }


class DeliveryStore:
    def __init__(self, database: Database, leases: Leases) -> None:
        self.database = database
        self.leases = leases
        """This node's claims on queue rows."""
        self.listeners: list[Callable[[], None]] = []
        """Called (from any thread) after rows were queued outside a message's ingest: the worker's wake-up."""

    def notify(self) -> None:
        for listener in list(self.listeners):
            listener()

    # queue ----------------------------------------------------------------------------------
    def due(self, now: float, limit: int) -> list[QueueItem]:
        """Claims (leases to this node) up to `limit` queue rows whose next attempt is due and that no live
        node holds, oldest first. A look first, so an idle queue costs no write."""
        rows = self.leases.take("status IN ('queued', 'deferred') AND next_attempt_at <= ?", (now,),
                                "next_attempt_at", limit, now, QUEUE_ITEM_SELECT, "q.")
        return [QueueItem(**dict(row)) for row in rows]

    def transition(
        self, item: QueueItem, event_type: str, detail: str, next_attempt_at: float | None = None,
        suppress_reason: str | None = None,
    ) -> dict:
        """Move one queue row to `event_type` (ending its lease), record the event and the message's status;
        returns the event."""
        stamp = now_iso()
        event = {
            "event_id": new_prefixed("evt", 10), "message_id": item.message_id, "event_type": event_type,
            "recipient": item.recipient, "timestamp": stamp, "detail": detail[:2000],
            "inbox_id": item.inbox_id, "domain_id": item.domain_id,
        }
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE outbound_queue SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
                f" last_error = ?, updated_at = ?, {CLEAR} WHERE id = ?",
                (event_type, next_attempt_at or 0, None if event_type == "sent" else detail[:2000], stamp,
                 item.id),
            )
            self._event(conn, item.org_id, item.message_id, item.inbox_id, item.domain_id, item.recipient,
                        event_type, detail, event["event_id"], stamp)
            if suppress_reason:
                self._suppress(conn, item.org_id, item.recipient, suppress_reason, detail, "delivery",
                               item.inbox_id, item.domain_id, stamp)
        return event

    def _event(self, conn: sqlite3.Connection, org_id: str, message_id: str, inbox_id: str | None,
               domain_id: str | None, recipient: str, event_type: str, detail: str, event_id: str,
               stamp: str) -> None:
        conn.execute(
            "INSERT INTO delivery_events (id, org_id, message_id, inbox_id, domain_id, recipient, event_type, detail,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, org_id, message_id, inbox_id, domain_id, recipient, event_type, detail[:2000], stamp),
        )
        conn.execute("UPDATE messages SET delivery_status = ? WHERE id = ?", (event_type, message_id))

    def record_bounce_report(self, queue_id: str, detail: str) -> tuple[str, dict] | None:
        """A DSN for one of our queue rows: `(org_id, bounced event)` plus a suppression; None for an unknown id."""
        row = self.database.one(
            QUEUE_ITEM_SELECT + " WHERE q.id = ?",
            (queue_id,),
        )
        if row is None:
            return None
        item = QueueItem(**dict(row))
        return item.org_id, self.transition(item, "bounced", detail, suppress_reason="hard_bounce")

    # suppressions ---------------------------------------------------------------------------
    def _suppress(self, conn: sqlite3.Connection, org_id: str, email: str, reason: str, detail: str, source: str,
                  inbox_id: str | None, domain_id: str | None, stamp: str) -> None:
        conn.execute(
            "INSERT INTO suppressions (id, org_id, email, reason, detail, source, inbox_id, domain_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, email) DO UPDATE SET reason = excluded.reason,"
            " detail = excluded.detail, source = excluded.source",
            (new_prefixed("sup", 10), org_id, email.lower(), reason, detail[:2000], source, inbox_id, domain_id,
             stamp),
        )

    def add_suppression(self, org_id: str, email: str, reason: str, detail: str = "",
                        inbox_id: str | None = None, domain_id: str | None = None) -> dict:
        """Suppress an address by hand (or update the reason of an existing suppression)."""
        with self.database.transaction() as conn:
            self._suppress(conn, org_id, email, reason, detail, "manual", inbox_id, domain_id, now_iso())
        return self.get_suppression(org_id, email)  # type: ignore[return-value]

    def get_suppression(self, org_id: str, email: str) -> dict | None:
        row = self.database.one("SELECT * FROM suppressions WHERE org_id = ? AND email = ?", (org_id, email.lower()))
        return suppression_json(row) if row else None

    def remove_suppression(self, org_id: str, email: str) -> bool:
        with self.database.transaction() as conn:
            cursor = conn.execute("DELETE FROM suppressions WHERE org_id = ? AND email = ?", (org_id, email.lower()))
        return cursor.rowcount > 0

    def is_suppressed(self, org_id: str, email: str) -> bool:
        return self.database.one(
            "SELECT 1 FROM suppressions WHERE org_id = ? AND email = ?", (org_id, email.lower())
        ) is not None

    def list_suppressions(self, org_id: str, filters: dict[str, str | None], limit: int,
                          after: tuple | None) -> list[sqlite3.Row]:
        """Newest first; `filters` may hold `email`, `inbox_id`, `domain_id`."""
        return self._page("suppressions", org_id, filters, limit, after)

    # events ---------------------------------------------------------------------------------
    def list_events(self, org_id: str, filters: dict[str, str | None], limit: int,
                    after: tuple | None) -> list[sqlite3.Row]:
        """Newest first; `filters` may hold `message_id`, `inbox_id`, `domain_id`, `event_type`."""
        return self._page("delivery_events", org_id, filters, limit, after)

    def _page(self, table: str, org_id: str, filters: dict[str, str | None], limit: int,
              after: tuple | None) -> list[sqlite3.Row]:
        where, params = newest_first_where(org_id, filters, after)
        return self.database.query(
            f"SELECT rowid, * FROM {table} WHERE {where}{NEWEST_FIRST} LIMIT ?", (*params, limit)
        )

    def counts(self, org_id: str, since: str, inbox_id: str | None, domain_id: str | None) -> dict[str, int]:
        """Events per type since `since`: one index range per type, so the cost follows the period, not history."""
        where, params = newest_first_where(org_id, {"inbox_id": inbox_id, "domain_id": domain_id}, None)
        one = f"SELECT ? AS event_type, COUNT(*) AS n FROM delivery_events WHERE {where} AND event_type = ?" \
              " AND created_at >= ?"
        rows = self.database.query(
            " UNION ALL ".join([one] * len(EVENT_TYPES)),
            [value for kind in EVENT_TYPES for value in (kind, *params, kind, since)],
        )
        return {row["event_type"]: row["n"] for row in rows}


def newest_first_where(org_id: str, filters: dict[str, str | None], after: tuple | None) -> tuple[str, list]:
    """`org_id = ?`, one equality per filter that is set, and the keyset `(created_at, rowid)` after `after`."""
    where, params = ["org_id = ?"], [org_id]
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if after is not None:
        where.append("(created_at, rowid) < (?, ?)")
        params.extend(after)
    return " AND ".join(where), params
