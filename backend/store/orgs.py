"""Organisations and their API keys (only the sha256 of a key is stored)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from ..util import new_prefixed, new_uuid, now_iso
from .database import Database
from .errors import is_storage_full


class LastAdminKey(Exception):
    """Revoking this key would leave its organisation without an active admin key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"{key_id} is the organisation's last active admin key; create another admin key"
                         " before revoking it")
        self.key_id = key_id


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    org_id: str
    name: str
    prefix: str
    key_hash: str
    scopes: tuple[str, ...]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    hold_sends: bool = False
    """Every send with this key waits for a person's approval (an agent's key)."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ApiKeyRecord:
        return cls(
            id=row["id"],
            org_id=row["org_id"],
            name=row["name"],
            prefix=row["prefix"],
            key_hash=row["key_hash"],
            scopes=tuple(json.loads(row["scopes"])),
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
            hold_sends=bool(row["hold_sends"]),
        )


class OrgStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def get_or_create_org(self, name: str) -> dict:
        found = self.org_by_name(name)
        if found is not None:
            return found
        org = {"id": new_uuid(), "name": name, "created_at": now_iso()}
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", org
            )
        return dict(self.database.one("SELECT * FROM orgs WHERE id = ?", (org["id"],)))

    def org_by_name(self, name: str) -> dict | None:
        row = self.database.one("SELECT * FROM orgs WHERE name = ?", (name,))
        return dict(row) if row else None

    def get_org(self, org_id: str) -> dict | None:
        row = self.database.one("SELECT * FROM orgs WHERE id = ?", (org_id,))
        return dict(row) if row else None

    def first_org(self) -> dict | None:
        row = self.database.one("SELECT * FROM orgs ORDER BY created_at, rowid LIMIT 1")
        return dict(row) if row else None

    def insert_key(self, org_id: str, key_hash: str, prefix: str, scopes: list[str], name: str,
                   hold_sends: bool = False) -> ApiKeyRecord:
        key_id = new_prefixed("key", 8)
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, scopes, created_at, hold_sends)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key_id, org_id, name, key_hash, prefix, json.dumps(scopes), now_iso(), int(hold_sends)),
            )
        found = self.get_key(org_id, key_id)
        assert found is not None
        return found

    def key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self.database.one("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))
        return ApiKeyRecord.from_row(row) if row else None

    def get_key(self, org_id: str, key_id: str) -> ApiKeyRecord | None:
        row = self.database.one("SELECT * FROM api_keys WHERE org_id = ? AND id = ?", (org_id, key_id))
        return ApiKeyRecord.from_row(row) if row else None

    def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        rows = self.database.query(
            "SELECT * FROM api_keys WHERE org_id = ? ORDER BY created_at, rowid", (org_id,)
        )
        return [ApiKeyRecord.from_row(row) for row in rows]

    def all_keys(self) -> list[tuple[str, ApiKeyRecord]]:
        rows = self.database.query(
            "SELECT api_keys.*, orgs.name AS org_name FROM api_keys JOIN orgs ON orgs.id = api_keys.org_id"
            " ORDER BY api_keys.created_at, api_keys.rowid"
        )
        return [(row["org_name"], ApiKeyRecord.from_row(row)) for row in rows]

    def revoke_key(self, org_id: str, key_id: str) -> bool:
        """Revoke an active key; `False` if there is none. Raises `LastAdminKey` rather than lock the org out.

        The check and the update share one write transaction (its rows locked where the engine has row
        locks), so two revocations of an organisation's last two admin keys (from the API and the command
        line at once, on any node) cannot both succeed.
        """
        with self.database.transaction() as conn:
            active = {
                row["id"]: "admin" in json.loads(row["scopes"])
                for row in conn.execute(
                    "SELECT id, scopes FROM api_keys WHERE org_id = ? AND revoked_at IS NULL"
                    + self.database.dialect.for_update, (org_id,)
                )
            }
            if key_id not in active:
                return False
            if active[key_id] and sum(active.values()) == 1:
                raise LastAdminKey(key_id)
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now_iso(), key_id))
        return True

    def set_hold_sends(self, org_id: str, key_id: str, hold_sends: bool) -> ApiKeyRecord | None:
        with self.database.transaction() as conn:
            conn.execute("UPDATE api_keys SET hold_sends = ? WHERE org_id = ? AND id = ?",
                         (int(hold_sends), org_id, key_id))
        return self.get_key(org_id, key_id)

    def touch_key(self, key_id: str, when: str) -> None:
        """Note when a key was last used; skipped on a full disk, so reads keep working there."""
        try:
            self.database.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (when, key_id))
        except sqlite3.OperationalError as exc:
            if not is_storage_full(exc):
                raise
