"""Audit trail of security-relevant actions."""

from __future__ import annotations

import json
import sqlite3

from ..util import new_prefixed, now_iso
from .database import Database
from .delivery import NEWEST_FIRST


class AuditStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record(
        self,
        org_id: str,
        key_id: str | None,
        action: str,
        target_type: str | None = None,
        target_id: str | None = None,
        detail: dict | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> str:
        """Write one entry; pass `conn` to write inside the caller's transaction."""
        entry_id = new_prefixed("aud", 10)
        row = (entry_id, org_id, key_id, action, target_type, target_id, json.dumps(detail or {}), now_iso())
        sql = (
            "INSERT INTO audit_logs (id, org_id, key_id, action, target_type, target_id, detail, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if conn is not None:
            conn.execute(sql, row)
        else:
            with self.database.transaction() as tx:
                tx.execute(sql, row)
        return entry_id

    def list_entries(
        self, org_id: str, action: str | None, after: tuple[str, int] | None, limit: int
    ) -> list[dict]:
        """Newest first (ties in insertion order), `limit` rows after the keyset `(created_at, rowid)`."""
        clauses, params = ["org_id = ?"], [org_id]
        if action:
            clauses.append("action = ?")
            params.append(action)
        if after is not None:
            clauses.append("(created_at, rowid) < (?, ?)")
            params.extend(after)
        rows = self.database.query(
            f"SELECT rowid, * FROM audit_logs WHERE {' AND '.join(clauses)}{NEWEST_FIRST} LIMIT ?",
            (*params, limit),
        )
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]
