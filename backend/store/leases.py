"""Leases: how several nodes on one database share the work of the background workers.

A worker claims due rows by writing its node id (`lease_owner`) and the end of its claim (`lease_until`)
in one statement that only takes rows nobody holds or whose lease ran out; on PostgreSQL the rows are
picked `FOR UPDATE SKIP LOCKED`, so two nodes claiming at once never wait for or take each other's rows.
The worker renews the leases of the rows it is still working on, and finishing a row clears its lease.
A node that dies simply stops renewing: once its leases run out, any node takes the rows again. Named
leases (`leases` table) do the same for work that is not a row, like the retention sweep.

On SQLite one server owns the data directory (its lock file), so every lease left in the database at
start belongs to a process that is gone and is cleared at once (`release_stale`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..coordination import shared

LEASED_TABLES = ("outbound_queue", "webhook_deliveries", "outbox")
FREE = "(lease_until IS NULL OR lease_until < ?)"
"""A row no live node holds (bind the current time)."""


class Leases:
    """The lease operations of one node (`owner`) on one table's rows, keyed by `id`."""

    def __init__(self, database: Any, table: str, owner: str, seconds: float) -> None:
        assert table in LEASED_TABLES
        self.database = database
        self.table = table
        self.owner = owner
        self.seconds = seconds
        self.renewed = time.monotonic()

    def claim(self, conn: Any, where: str, params: Iterable[Any], order: str, limit: int,
              now: float | None = None) -> list[str]:
        """Lease up to `limit` free rows matching `where`, in `order`, inside the caller's transaction;
        returns their ids."""
        now = time.time() if now is None else now
        cursor = conn.execute(
            f"UPDATE {self.table} SET lease_owner = ?, lease_until = ? WHERE id IN (SELECT id FROM {self.table}"
            f" WHERE {where} AND {FREE} ORDER BY {order} LIMIT ?{self.database.dialect.skip_locked}) RETURNING id",
            (self.owner, now + self.seconds, *params, now, limit),
        )
        return [row[0] for row in cursor.fetchall()]

    def take(self, due: str, params: tuple, order: str, limit: int, now: float, select: str,
             alias: str = "") -> list[Any]:
        """Claim up to `limit` free rows matching `due`, earliest `order` first, and read them with `select`
        (whose table carries `alias`). A look first, so an idle table costs no write transaction."""
        look = f"SELECT 1 FROM {self.table} WHERE {due} AND {FREE} LIMIT 1"
        if self.database.one(look, (*params, now)) is None:
            return []
        with self.database.transaction() as conn:
            ids = self.claim(conn, due, params, order, limit, now)
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            return conn.execute(f"{select} WHERE {alias}id IN ({marks}) ORDER BY {alias}{order}", ids).fetchall()

    def hold(self, row_id: str) -> bool:
        """Whether this node still holds `row_id`'s lease, extending it if so. Checked just before work that
        must not be done twice (handing a message to the next server): a node that was too slow to renew
        gives the row up to the node that took it over instead of doing the work alongside it. One server
        owns a SQLite database, so there it always holds."""
        if not shared(self.database):
            return True
        # Still the owner means no other node claimed the row, even if the lease ran out meanwhile.
        with self.database.transaction() as conn:
            cursor = conn.execute(f"UPDATE {self.table} SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                                  (time.time() + self.seconds, row_id, self.owner))
            return cursor.rowcount > 0

    def renew(self, ids: Iterable[str], force: bool = False) -> None:
        """Extend this node's leases on `ids` (rows still being worked on); at most every third of a lease
        unless `force`."""
        ids = list(ids)
        if not ids or (not force and time.monotonic() - self.renewed < self.seconds / 3):
            return
        self.renewed = time.monotonic()
        marks = ", ".join("?" * len(ids))
        with self.database.transaction() as conn:
            conn.execute(
                f"UPDATE {self.table} SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks})",
                (time.time() + self.seconds, self.owner, *ids),
            )


CLEAR = "lease_owner = NULL, lease_until = NULL"
"""Assignments that end a row's lease (in the UPDATE that records the work's outcome)."""


def release_stale(database: Any, owner: str | None) -> None:
    """At start: clear the leases a previous run of this node held (`owner`), or, with `owner` None (one
    server per database), every lease."""
    with database.transaction() as conn:
        for table in LEASED_TABLES:
            if owner is None:
                conn.execute(f"UPDATE {table} SET {CLEAR} WHERE lease_owner IS NOT NULL")
            else:
                conn.execute(f"UPDATE {table} SET {CLEAR} WHERE lease_owner = ?", (owner,))
        if owner is None:
            conn.execute("UPDATE leases SET owner = NULL, lease_until = 0")
        else:
            conn.execute("UPDATE leases SET owner = NULL, lease_until = 0 WHERE owner = ?", (owner,))


def claim_named(database: Any, name: str, owner: str, seconds: float) -> bool:
    """Take (or extend) the named lease for `seconds`: True when this node holds it now."""
    now = time.time()
    with database.transaction() as conn:
        row = conn.execute(
            "INSERT INTO leases (name, owner, lease_until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET owner = excluded.owner, lease_until = excluded.lease_until"
            " WHERE leases.lease_until < ? OR leases.owner = excluded.owner RETURNING owner",
            (name, owner, now + seconds, now),
        ).fetchone()
    return row is not None


def renew_named(database: Any, name: str, owner: str, seconds: float) -> None:
    """Extend the named lease if this node holds it (a long piece of work between its steps)."""
    with database.transaction() as conn:
        conn.execute("UPDATE leases SET lease_until = ? WHERE name = ? AND owner = ?",
                     (time.time() + seconds, name, owner))


def release_named(database: Any, name: str, owner: str) -> None:
    """Give the named lease up (when its work is done), if this node still holds it."""
    with database.transaction() as conn:
        conn.execute("UPDATE leases SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?",
                     (name, owner))
