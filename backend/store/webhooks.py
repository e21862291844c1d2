"""Webhook deliveries: one row per event and endpoint, carrying its payload, schedule and attempt log."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from ..util import new_prefixed, now_iso
from .database import Database
from .delivery import NEWEST_FIRST, newest_first_where
from .leases import CLEAR, FREE, Leases

STATUSES = ("pending", "success", "failed")


def _delivery(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["attempt_log"] = json.loads(item.get("attempt_log") or "[]")
    return item


class WebhookStore:
    def __init__(self, database: Database, leases: Leases) -> None:
        self.database = database
        self.leases = leases
        """This node's claims on deliveries."""
        self.listeners: list[Callable[[], None]] = []
        """Called when a delivery becomes due now (the dispatcher wakes up instead of waiting to poll)."""
        self._outcomes_seen: int | None = None

    def _notify(self) -> None:
        for listener in self.listeners:
            listener()

    def enqueue(
        self,
        conn: sqlite3.Connection,
        org_id: str,
        inbox_id: str,
        message_id: str | None,
        endpoint: str,
        event: str,
        payload: str,
        when: float,
    ) -> str:
        """Insert a pending delivery inside the caller's transaction, so it commits with its cause."""
        delivery_id = new_prefixed("whd", 12)
        stamp = now_iso()
        conn.execute(
            "INSERT INTO webhook_deliveries (id, org_id, inbox_id, message_id, endpoint, event, payload,"
            " status, attempts, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
            (delivery_id, org_id, inbox_id, message_id, endpoint, event, payload, when, stamp, stamp),
        )
        self._notify()
        return delivery_id

    def queue_delivery_outcomes(self, build: Callable[[dict], tuple[str, str] | None], batch: int = 500) -> int:
        """Queue webhooks for delivery events recorded since the last scan.

        A cursor on `delivery_events.rowid` moves in the same transaction as the rows it queues, so
        every outcome is queued exactly once, across crashes. `build(event)` returns the webhook's
        event name and payload, or None when the inbox does not want it. Returns how many were queued.
        """
        newest = self.database.one("SELECT MAX(rowid) FROM delivery_events")[0] or 0
        if newest == self._outcomes_seen:
            return 0  # nothing new: no write transaction on every turn of the dispatcher
        queued = 0
        with self.database.transaction() as conn:
            # Every node runs this scan: the lock (PostgreSQL) makes them take turns, and makes MAX(rowid)
            # wait for events still being inserted, so none is passed over.
            if lock := self.database.dialect.scan_lock("delivery_events"):
                conn.execute(lock)
            top = conn.execute("SELECT MAX(rowid) FROM delivery_events").fetchone()[0] or 0
            found = conn.execute("SELECT position FROM webhook_cursors WHERE name = 'delivery_events'").fetchone()
            start = found[0] if found is not None else top  # a new server does not replay history
            end = min(top, start + batch)
            rows = conn.execute(
                "SELECT e.*, i.address, i.webhook_endpoint, i.webhook_events FROM delivery_events e"
                " JOIN inboxes i ON i.id = e.inbox_id WHERE e.rowid > ? AND e.rowid <= ?"
                " AND i.webhook_endpoint IS NOT NULL ORDER BY e.rowid",
                (start, end),
            ).fetchall()
            for row in rows:
                event = dict(row)
                event["webhook_events"] = json.loads(event["webhook_events"] or "[]")
                built = build(event)
                if built is not None:
                    self.enqueue(conn, event["org_id"], event["inbox_id"], event["message_id"],
                                 event["webhook_endpoint"], built[0], built[1], time.time())
                    queued += 1
            # Deleted rows can lower MAX(rowid); the cursor follows it so new rowids are not skipped.
            conn.execute(
                "INSERT INTO webhook_cursors (name, position) VALUES ('delivery_events', ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (end,),
            )
        self._outcomes_seen = end
        return queued

    # the dispatcher's side -------------------------------------------------------------
    def due(self, now: float, limit: int) -> list[dict]:
        """Claims (leases to this node) up to `limit` pending deliveries whose time has come and that no
        live node holds, oldest schedule first. A look first, so an idle table costs no write."""
        rows = self.leases.take("status = 'pending' AND next_attempt_at <= ?", (now,), "next_attempt_at", limit,
                                now, "SELECT * FROM webhook_deliveries")
        return [_delivery(r) for r in rows]

    def release(self, ids: list[str]) -> None:
        """Give back deliveries this node claimed but did not start (another node may take them now)."""
        if ids:
            with self.database.transaction() as conn:
                conn.execute(f"UPDATE webhook_deliveries SET {CLEAR} WHERE lease_owner = ?"
                             f" AND id IN ({', '.join('?' * len(ids))})", (self.leases.owner, *ids))

    def next_due_at(self, now: float) -> float | None:
        """When the next pending delivery no live node holds is due."""
        row = self.database.one(
            f"SELECT next_attempt_at FROM webhook_deliveries WHERE status = 'pending' AND {FREE}"
            " ORDER BY next_attempt_at LIMIT 1",
            (now,),
        )
        return row[0] if row else None

    def current_webhook(self, inbox_id: str) -> tuple[str, str] | None:
        """The inbox's webhook endpoint and signing secret now, or None if it has none any more."""
        row = self.database.one(
            "SELECT webhook_endpoint, webhook_secret FROM inboxes WHERE id = ?", (inbox_id,)
        )
        if row is None or not row["webhook_endpoint"] or not row["webhook_secret"]:
            return None
        return row["webhook_endpoint"], row["webhook_secret"]

    def record_attempt(
        self, delivery_id: str, endpoint: str, entry: dict, status: str, next_attempt_at: float | None
    ) -> None:
        """Append one attempt to the log and move the delivery to its new status and schedule (ending its
        lease)."""
        stamp = now_iso()
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT attempt_log FROM webhook_deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:  # deleted meanwhile (inbox or organisation data deletion)
                return
            log = json.loads(row["attempt_log"] or "[]")
            log.append(entry)
            conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
                " endpoint = ?, http_status = ?, last_error = ?, latency_ms = ?, attempt_log = ?, updated_at = ?,"
                f" delivered_at = CASE WHEN ? = 'success' THEN ? ELSE delivered_at END, {CLEAR} WHERE id = ?",
                (
                    status, next_attempt_at, endpoint, entry.get("http_status"), entry.get("error"),
                    entry.get("latency_ms"), json.dumps(log), stamp, status, stamp, delivery_id,
                ),
            )

    # the API's side -------------------------------------------------------------------------
    def get(self, org_id: str, delivery_id: str) -> dict | None:
        row = self.database.one(
            "SELECT * FROM webhook_deliveries WHERE org_id = ? AND id = ?", (org_id, delivery_id)
        )
        return _delivery(row) if row else None

    def list(
        self,
        org_id: str,
        limit: int,
        after: tuple[str, str] | None = None,
        inbox_id: str | None = None,
        status: str | None = None,
        endpoint: str | None = None,
    ) -> list[dict]:
        """Newest first, keyset on (created_at, rowid); returns up to `limit + 1` rows to tell if more exist."""
        where, params = newest_first_where(
            org_id, {"inbox_id": inbox_id, "status": status, "endpoint": endpoint}, after
        )
        rows = self.database.query(
            "SELECT rowid, id, org_id, inbox_id, message_id, endpoint, event, status, attempts, next_attempt_at,"
            " http_status, last_error, latency_ms, created_at, updated_at, delivered_at"
            f" FROM webhook_deliveries WHERE {where}{NEWEST_FIRST} LIMIT ?",
            (*params, limit + 1),
        )
        return [dict(r) for r in rows]

    def retry(self, org_id: str, delivery_id: str, now: float) -> dict | None:
        """Queue a delivery for another round of attempts right away (its log is kept)."""
        with self.database.transaction() as conn:
            cursor = conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, retry_base = attempts,"
                " updated_at = ? WHERE org_id = ? AND id = ?",
                (now, now_iso(), org_id, delivery_id),
            )
        if cursor.rowcount == 0:
            return None
        self._notify()
        return self.get(org_id, delivery_id)

    def health(self, org_id: str, since: str) -> dict:
        """Counts per status and the average latency of successful deliveries created since `since`."""
        rows = self.database.query(
            "SELECT status, COUNT(*) AS n, AVG(latency_ms) AS latency, SUM(attempts) AS attempts"
            " FROM webhook_deliveries WHERE org_id = ? AND created_at >= ? GROUP BY status",
            (org_id, since),
        )
        counts = {status: 0 for status in STATUSES}
        latency, attempts = None, 0
        for row in rows:
            counts[row["status"]] = row["n"]
            attempts += row["attempts"] or 0
            if row["status"] == "success":
                latency = row["latency"]
        return {"counts": counts, "average_latency_ms": latency, "attempts": attempts}
