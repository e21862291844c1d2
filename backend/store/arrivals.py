"""Reads for waiting on new mail: an inbox's newest position and the messages after a position."""

from __future__ import annotations

import sqlite3

from .database import Database

Position = tuple[str, int]
"""A point in an inbox's message order: `(created_at, seq)`."""


def newest_position(database: Database, org_id: str, inbox_id: str) -> Position:
    row = database.one(
        "SELECT created_at, seq FROM messages WHERE inbox_id = ? AND org_id = ?"
        " ORDER BY created_at DESC, seq DESC LIMIT 1",
        (inbox_id, org_id),
    )
    return (row["created_at"], row["seq"]) if row else ("", 0)


def message_position(database: Database, org_id: str, inbox_id: str, message_id: str) -> Position | None:
    row = database.one(
        "SELECT created_at, seq FROM messages WHERE id = ? AND inbox_id = ? AND org_id = ?",
        (message_id, inbox_id, org_id),
    )
    return (row["created_at"], row["seq"]) if row else None


def messages_after(
    database: Database, org_id: str, inbox_id: str, after: Position, directions: tuple[str, ...], limit: int
) -> list[sqlite3.Row]:
    """Messages of the inbox after `after`, oldest first (the `messages_inbox` index serves the order)."""
    marks = ",".join("?" * len(directions))
    return database.query(
        "SELECT * FROM messages WHERE inbox_id = ? AND org_id = ? AND (created_at, seq) > (?, ?)"
        f" AND direction IN ({marks}) ORDER BY created_at, seq LIMIT ?",
        (inbox_id, org_id, *after, *directions, limit),
    )
