"""Domains and inboxes: the addressing side of the store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ..util import new_uuid, now_iso
from .database import Database
from .errors import IntegrityError


def _domain(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["records"] = json.loads(item["records"] or "[]")
    item["shared"] = bool(item["shared"])
    return item


def _inbox(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["webhook_events"] = json.loads(item["webhook_events"]) if item["webhook_events"] else None
    item["extraction_schema"] = (
        json.loads(item["extraction_schema"]) if item["extraction_schema"] else None
    )
    return item


INBOX_COLUMNS = "inboxes.*, domains.name AS domain_name"
INBOX_JOIN = "inboxes JOIN domains ON domains.id = inboxes.domain_id"
RECEIVES = "(status = 'verified' OR shared = 1)"
"""A domain row that receives mail from anywhere: the one verified row for its name, or the shared domain.

Several organisations may hold the same name unverified; none of those rows receives mail from outside
the organisation that holds it (see `receiving_domain_ids`).
"""


class DomainTaken(Exception):
    """The organisation already holds this name, or another row is already verified for it."""


class DomainStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # domains ----------------------------------------------------------------------
    def create_domain(
        self,
        org_id: str | None,
        name: str,
        region: str,
        records: list[dict],
        dkim_private_key: str | None,
        dkim_selector: str,
        shared: bool = False,
        status: str = "not_started",
    ) -> dict:
        domain_id = new_uuid()
        with self._unique_name(), self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO domains (id, org_id, name, status, region, records, dkim_selector,"
                " dkim_private_key, shared, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    domain_id, org_id, name, status, region, json.dumps(records), dkim_selector,
                    dkim_private_key, int(shared), now_iso(),
                ),
            )
        return self.get_domain_any(domain_id)  # type: ignore[return-value]

    def get_domain_any(self, domain_id: str) -> dict | None:
        row = self.database.one("SELECT * FROM domains WHERE id = ?", (domain_id,))
        return _domain(row) if row else None

    def domain_by_name(self, name: str) -> dict | None:
        """The domain this server receives mail for under `name` (verified or shared), if any."""
        row = self.database.one(f"SELECT * FROM domains WHERE name = ? AND {RECEIVES}", (name.lower(),))
        return _domain(row) if row else None

    def own_domain_by_name(self, org_id: str, name: str) -> dict | None:
        row = self.database.one("SELECT * FROM domains WHERE org_id = ? AND name = ?", (org_id, name.lower()))
        return _domain(row) if row else None

    def receiving_domain_ids(self, names: list[str], sender_org_id: str | None = None) -> dict[str, str]:
        """{name: domain id} of the row that receives mail for each name, as seen by a sender.

        The verified (or shared) row wins. Failing that, mail the sender's own organisation sends through
        the API to a name it holds unverified is delivered to its own row: it is not mail from outside.
        Any other sender (SMTP, another organisation) reaches only verified and shared rows.
        """
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = self.database.query(
            f"SELECT id, name FROM domains WHERE name IN ({marks}) AND ({RECEIVES} OR org_id = ?)"
            f" ORDER BY {RECEIVES}",
            (*names, sender_org_id),
        )
        return {row["name"]: row["id"] for row in rows}  # the receiving row comes last and wins

    def get_domain(self, org_id: str, domain_id: str) -> dict | None:
        """A domain the organisation may see: its own, or the shared default domain."""
        row = self.database.one(
            "SELECT * FROM domains WHERE id = ? AND (org_id = ? OR shared = 1)", (domain_id, org_id)
        )
        return _domain(row) if row else None

    def list_domains(self, org_id: str) -> list[dict]:
        rows = self.database.query(
            "SELECT * FROM domains WHERE org_id = ?"
            " OR (shared = 1 AND EXISTS (SELECT 1 FROM inboxes WHERE inboxes.domain_id = domains.id"
            " AND inboxes.org_id = ?)) ORDER BY shared DESC, created_at, rowid",
            (org_id, org_id),
        )
        return [_domain(row) for row in rows]

    def own_domain_names(self, org_id: str) -> set[str]:
        """Names of the domains the organisation registered (not the shared one): its own mail."""
        return {row[0] for row in self.database.query("SELECT name FROM domains WHERE org_id = ?", (org_id,))}

    def shared_domain(self) -> dict | None:
        row = self.database.one("SELECT * FROM domains WHERE shared = 1 ORDER BY created_at, rowid LIMIT 1")
        return _domain(row) if row else None

    def update_domain_status(self, domain_id: str, status: str, records: list[dict]) -> None:
        verified_at = now_iso() if status == "verified" else None
        with self._unique_name(), self.database.transaction() as conn:
            conn.execute(
                "UPDATE domains SET status = ?, records = ?, verified_at = COALESCE(?, verified_at)"
                " WHERE id = ?",
                (status, json.dumps(records), verified_at, domain_id),
            )

    @staticmethod
    @contextmanager
    def _unique_name() -> Iterator[None]:
        """Name clashes the schema refuses (one row per name per organisation, one verified row per name)."""
        try:
            yield
        except IntegrityError as exc:
            raise DomainTaken(str(exc)) from exc

    # inboxes -------------------------------------------------------------------------
    def create_inbox(
        self,
        org_id: str,
        domain: dict,
        local_part: str,
        display_name: str | None,
        webhook: dict | None,
    ) -> dict:
        inbox_id = new_uuid()
        address = f"{local_part}@{domain['name']}"
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO inboxes (id, org_id, domain_id, local_part, address, display_name,"
                " webhook_endpoint, webhook_events, webhook_secret, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    inbox_id, org_id, domain["id"], local_part, address, display_name,
                    webhook["endpoint"] if webhook else None,
                    json.dumps(webhook["events"]) if webhook else None,
                    webhook["secret"] if webhook else None,
                    now_iso(),
                ),
            )
        return self.get_inbox(org_id, inbox_id)  # type: ignore[return-value]

    def address_taken(self, domain_id: str, local_part: str, exclude_id: str | None = None) -> bool:
        row = self.database.one(
            "SELECT id FROM inboxes WHERE domain_id = ? AND local_part = ? AND id IS NOT ?",
            (domain_id, local_part, exclude_id),
        )
        return row is not None

    def get_inbox(self, org_id: str, inbox_id: str) -> dict | None:
        row = self.database.one(
            f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.id = ? AND inboxes.org_id = ?",
            (inbox_id, org_id),
        )
        return _inbox(row) if row else None

    def get_inbox_any(self, inbox_id: str) -> dict | None:
        row = self.database.one(
            f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.id = ?", (inbox_id,)
        )
        return _inbox(row) if row else None

    def inbox_by_address(self, address: str, sender_org_id: str | None = None) -> dict | None:
        """The inbox that receives mail for an address; `sender_org_id` as in `receiving_domain_ids`."""
        address = address.lower()
        receiving = self.receiving_domain_ids([address.rpartition("@")[2]], sender_org_id)
        if not receiving:
            return None
        row = self.database.one(
            f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.address = ? AND inboxes.domain_id = ?",
            (address, *receiving.values()),
        )
        return _inbox(row) if row else None

    def own_inbox_by_address(self, org_id: str, address: str) -> dict | None:
        """The organisation's inbox with this address, on any of its domains or the shared one."""
        row = self.database.one(
            f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.address = ? AND inboxes.org_id = ?",
            (address.lower(), org_id),
        )
        return _inbox(row) if row else None

    def inbox_statuses(self, domain_ids: list[str], addresses: list[str]) -> dict[str, str | None]:
        """{address: status} of the inboxes among `addresses` on the given domains."""
        if not domain_ids or not addresses:
            return {}
        rows = self.database.query(
            f"SELECT address, status FROM inboxes WHERE address IN ({','.join('?' * len(addresses))})"
            f" AND domain_id IN ({','.join('?' * len(domain_ids))})",
            (*addresses, *domain_ids),
        )
        return {row["address"]: row["status"] for row in rows}

    def list_inboxes(self, org_id: str, domain_id: str | None = None) -> list[dict]:
        if domain_id is None:
            rows = self.database.query(
                f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.org_id = ?"
                " ORDER BY inboxes.created_at, inboxes.rowid",
                (org_id,),
            )
        else:
            rows = self.database.query(
                f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.domain_id = ?"
                " AND inboxes.org_id = ? ORDER BY inboxes.created_at, inboxes.rowid",
                (domain_id, org_id),
            )
        return [_inbox(row) for row in rows]

    def inboxes_for_domains(self, org_id: str, domain_ids: list[str]) -> dict[str, list[dict]]:
        """Inboxes of several domains in one query (no N+1 when listing domains)."""
        grouped: dict[str, list[dict]] = {d: [] for d in domain_ids}
        if not domain_ids:
            return grouped
        marks = ",".join("?" * len(domain_ids))
        rows = self.database.query(
            f"SELECT {INBOX_COLUMNS} FROM {INBOX_JOIN} WHERE inboxes.org_id = ?"
            f" AND inboxes.domain_id IN ({marks}) ORDER BY inboxes.created_at, inboxes.rowid",
            (org_id, *domain_ids),
        )
        for row in rows:
            grouped[row["domain_id"]].append(_inbox(row))
        return grouped

    def update_inbox(self, org_id: str, inbox_id: str, changes: dict) -> dict | None:
        """Apply column changes (already validated); `address` follows `local_part`."""
        if changes:
            columns = dict(changes)
            for key in ("webhook_events", "extraction_schema"):
                if key in columns and columns[key] is not None:
                    columns[key] = json.dumps(columns[key])
            assignments = ", ".join(f"{name} = :{name}" for name in columns)
            with self.database.transaction() as conn:
                conn.execute(
                    f"UPDATE inboxes SET {assignments} WHERE id = :_id AND org_id = :_org",
                    {**columns, "_id": inbox_id, "_org": org_id},
                )
        return self.get_inbox(org_id, inbox_id)
