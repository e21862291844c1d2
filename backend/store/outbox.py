"""The outbox: drafts, and the held or scheduled messages waiting to leave (one `outbox` row each).

A held or scheduled message is also an ordinary message row (the sender's copy, in its thread) whose
`delivery_status` says why it has not left; the `outbox` row carries what releasing it needs (the
message as composed, its recipients, the validation verdict) and its place in the approval flow.
Every status change is a guarded `UPDATE … WHERE status IN (…)` inside the caller's transaction, so two
deciders (or a decider and the worker) can never both move the same row.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..util import new_prefixed, now_iso
from .database import Database
from .leases import CLEAR, FREE, Leases

DRAFT = "draft"
SENDING = "sending"
"""A draft being sent: hidden from lists, back to `draft` if the send fails."""
PENDING = "pending_approval"
SCHEDULED = "scheduled"
APPROVED = "approved"
"""Approved and due now: the release is under way (or the worker picks it up after a crash)."""
SENT = "sent"
REJECTED = "rejected"
CANCELLED = "cancelled"
FAILED = "failed"
WAITING = (PENDING, SCHEDULED, APPROVED)
"""Statuses whose message has not left yet (the worker's partial index holds exactly these)."""
RELEASABLE = (SCHEDULED, APPROVED)
ITEM_STATUSES = (PENDING, SCHEDULED, APPROVED, SENT, REJECTED, CANCELLED, FAILED)
ITEM_SELECT = (
    "SELECT o.seq AS outbox_seq, o.created_at AS outbox_created_at, o.status AS outbox_status, o.submitted_by,"
    " o.decided_by, o.payload, o.validation, o.send_at, o.due_at, o.expires_at, o.reason, o.updated_at, m.*"
    " FROM outbox o JOIN messages m ON m.id = o.id"
)


class OutboxStore:
    def __init__(self, database: Database, leases: Leases) -> None:
        self.database = database
        self.leases = leases
        """This node's claims on due rows."""
        self.listeners: list = []
        """Called (from any thread) when a row may have become due sooner: the worker's wake-up."""

    def notify(self) -> None:
        for listener in list(self.listeners):
            listener()

    # drafts -----------------------------------------------------------------------------------
    def create_draft(self, org_id: str, inbox_id: str, payload: dict[str, Any]) -> sqlite3.Row:
        draft_id, stamp = new_prefixed("drf", 12), now_iso()
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox (id, org_id, inbox_id, status, payload, send_at, created_at, updated_at)"
                " VALUES (?, ?, ?, 'draft', ?, ?, ?, ?)",
                (draft_id, org_id, inbox_id, json.dumps(payload), payload.get("send_at"), stamp, stamp),
            )
        return self.get_draft(org_id, draft_id)  # type: ignore[return-value]

    def get_draft(self, org_id: str, draft_id: str) -> sqlite3.Row | None:
        return self.database.one(
            "SELECT * FROM outbox WHERE org_id = ? AND id = ? AND status = 'draft'", (org_id, draft_id)
        )

    def update_draft(self, org_id: str, draft_id: str, inbox_id: str, payload: dict[str, Any]) -> sqlite3.Row | None:
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET inbox_id = ?, payload = ?, send_at = ?, updated_at = ?"
                " WHERE org_id = ? AND id = ? AND status = 'draft'",
                (inbox_id, json.dumps(payload), payload.get("send_at"), now_iso(), org_id, draft_id),
            )
        return self.get_draft(org_id, draft_id)

    def delete_draft(self, org_id: str, draft_id: str, status: str = DRAFT) -> bool:
        with self.database.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM outbox WHERE org_id = ? AND id = ? AND status = ?", (org_id, draft_id, status)
            )
        return cursor.rowcount > 0

    def claim_draft(self, org_id: str, draft_id: str, claim: bool = True) -> bool:
        """Mark a draft as being sent (or give it back); False when another request holds it."""
        before, after = (DRAFT, SENDING) if claim else (SENDING, DRAFT)
        with self.database.transaction() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = ? WHERE org_id = ? AND id = ? AND status = ?",
                (after, org_id, draft_id, before),
            )
        return cursor.rowcount > 0

    def list_rows(self, org_id: str, status: str, inbox_id: str | None, order: str, limit: int,
                  after: tuple | None, select: str = "SELECT o.* FROM outbox o") -> list[sqlite3.Row]:
        """One status's rows, keyset-paged on `(created_at, seq)` (oldest or newest first), or for
        scheduled messages on `(send_at, seq)`, soonest or latest first."""
        time = "o.send_at" if status == SCHEDULED else "o.created_at"
        where, params = ["o.org_id = ?", "o.status = ?"], [org_id, status]
        if inbox_id is not None:
            where.append("o.inbox_id = ?")
            params.append(inbox_id)
        direction, compare = ("DESC", "<") if order == "desc" else ("ASC", ">")
        if after is not None:
            where.append(f"({time}, o.seq) {compare} (?, ?)")
            params.extend(after)
        return self.database.query(
            f"{select} WHERE {' AND '.join(where)} ORDER BY {time} {direction}, o.seq {direction} LIMIT ?",
            (*params, limit),
        )

    def counts(self, org_id: str, inbox_id: str | None) -> dict[str, int]:
        """Rows per status the Outbox view shows: drafts, pending approvals, scheduled."""
        column, value = ("inbox_id", inbox_id) if inbox_id is not None else ("org_id", org_id)
        one = f"SELECT ? AS status, COUNT(*) AS n FROM outbox WHERE {column} = ? AND status = ? AND org_id = ?"
        kinds = (DRAFT, PENDING, SCHEDULED)
        rows = self.database.query(" UNION ALL ".join([one] * len(kinds)),
                                   [v for kind in kinds for v in (kind, value, kind, org_id)])
        return {row["status"]: row["n"] for row in rows}

    # held and scheduled messages --------------------------------------------------------------
    def hold(self, conn: sqlite3.Connection, message_id: str, org_id: str, inbox_id: str, status: str,
             submitted_by: str | None, payload: dict[str, Any], validation: dict | None, send_at: str | None,
             due_at: float | None, expires_at: str | None) -> None:
        """The outbox row of a message that waits (inside the transaction that stores the message)."""
        stamp = now_iso()
        conn.execute(
            "INSERT INTO outbox (id, org_id, inbox_id, status, submitted_by, payload, validation, send_at,"
            " due_at, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (message_id, org_id, inbox_id, status, submitted_by, json.dumps(payload),
             json.dumps(validation) if validation is not None else None, send_at, due_at, expires_at, stamp,
             stamp),
        )

    def get_item(self, org_id: str, message_id: str) -> sqlite3.Row | None:
        return self.database.one(ITEM_SELECT + " WHERE o.org_id = ? AND o.id = ?", (org_id, message_id))

    def item_by_id(self, conn: sqlite3.Connection, message_id: str) -> sqlite3.Row | None:
        return conn.execute(ITEM_SELECT + " WHERE o.id = ?", (message_id,)).fetchone()

    def move(self, conn: sqlite3.Connection, message_id: str, before: tuple[str, ...], after: str,
             **columns: Any) -> bool:
        """Guarded status change (plus other columns), ending any lease on the row; False when the row is no
        longer in `before`."""
        assignments = "".join(f", {name} = :{name}" for name in columns) + f", {CLEAR}"
        marks = ", ".join(f":b{i}" for i in range(len(before)))
        cursor = conn.execute(
            f"UPDATE outbox SET status = :after, updated_at = :stamp{assignments}"
            f" WHERE id = :id AND status IN ({marks})",
            {**columns, "after": after, "stamp": now_iso(), "id": message_id,
             **{f"b{i}": status for i, status in enumerate(before)}},
        )
        return cursor.rowcount > 0

    def due(self, now: float, limit: int) -> list[sqlite3.Row]:
        """Claims (leases to this node) up to `limit` rows whose time has come (a send time, or an
        approval's expiry) and that no live node holds, earliest first. A look first, so an idle outbox
        costs no write."""
        return self.leases.take("status IN ('scheduled', 'approved', 'pending_approval') AND due_at <= ?", (now,),
                                "due_at", limit, now, ITEM_SELECT, "o.")

    def next_due_at(self, now: float) -> float | None:
        """The earliest time a row no live node holds is due."""
        row = self.database.one(
            "SELECT due_at FROM outbox WHERE status IN ('scheduled', 'approved', 'pending_approval')"
            f" AND due_at IS NOT NULL AND {FREE} ORDER BY due_at LIMIT 1",
            (now,),
        )
        return row[0] if row else None
