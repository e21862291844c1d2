"""Several server nodes on one database: each node's name, and what is created once per database.

Every node has a name (`COMMUNE_NODE_ID`, or a random one per start) written into the leases it takes
(store/leases.py) and the events it relays to the other nodes. On SQLite one server owns the database
(the data directory's lock), so nothing is shared: the server secret and `admin.key` stay files in the
data directory, exactly as before. On a shared engine (PostgreSQL) the secret lives in the database,
created by whichever node starts first, and the admin key is created once per database: the node that
creates it writes `admin.key` into its own data directory and logs it; the others start without one.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from .util import now_iso

SECRET = "server_secret"
ADMIN_KEY = "admin_key"


def node_id(configured: str) -> str:
    """This process's name among the nodes: the configured one, or a fresh random one."""
    return configured.strip() or "node_" + secrets.token_hex(6)


def shared(database: Any) -> bool:
    """Whether other nodes may use this database at the same time (anything but SQLite)."""
    return getattr(database, "engine", "sqlite") != "sqlite"


def first_to_record(conn: Any, name: str, value: str) -> bool:
    """Record `name` once per database, inside the caller's transaction: True for the one caller that did.

    A second node recording the same name at the same moment waits for the first one's transaction (the
    primary key) and then finds it there, so whatever the first one creates alongside is visible to it.
    """
    cursor = conn.execute(
        "INSERT INTO server_state (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (name, value, now_iso()),
    )
    return cursor.rowcount > 0


def database_secret(database: Any) -> bytes:
    """The server secret kept in a shared database, created by the first node that asks."""
    with database.transaction() as conn:
        first_to_record(conn, SECRET, secrets.token_hex(32))
        row = conn.execute("SELECT value FROM server_state WHERE name = ?", (SECRET,)).fetchone()
    return bytes.fromhex(row[0])


def server_secret(database: Any, path: Path, load_file: Any) -> bytes:
    """The secret that signs links and tokens: the same on every node of a shared database, the data
    directory's file otherwise."""
    return database_secret(database) if shared(database) else load_file(path)
