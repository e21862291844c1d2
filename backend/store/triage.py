"""Thread triage: status, assignee and tags on the `threads` rows the mail store keeps."""

from __future__ import annotations

import json
import sqlite3

from .database import Database

MAX_TAGS = 50
MAX_LABELS = 50


class TooManyTags(ValueError):
    pass


class TooManyLabels(ValueError):
    pass


def relabel(conn: sqlite3.Connection, where: str, params: tuple, add: list[str], remove: list[str]) -> None:
    """Add and remove labels on the messages matching `where` (inside the caller's transaction); the
    label triggers bring `message_labels`, `thread_labels` and the threads' fields along."""
    if not add and not remove:
        return
    updates = []
    for message_id, stored in conn.execute(f"SELECT id, labels FROM messages WHERE {where}", params):
        current = json.loads(stored or "[]")
        labels = sorted((set(current) | set(add)) - set(remove))
        if len(labels) > MAX_LABELS:
            raise TooManyLabels(f"a message holds at most {MAX_LABELS} labels")
        if labels != current:
            updates.append((json.dumps(labels), message_id))
    conn.executemany("UPDATE messages SET labels = ? WHERE id = ?", updates)


class TriageStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def apply(
        self,
        org_id: str,
        thread_id: str,
        changes: dict,
        add: list[str] | None = None,
        remove: list[str] | None = None,
        labels: tuple[list[str], list[str]] = ([], []),
    ) -> sqlite3.Row | None:
        """Set `status` / `assigned_to` / `tags`, add or remove tags, and add or remove `labels` (on every
        message of the thread) in one transaction.

        Tags are read and written inside the transaction, so concurrent additions are never lost.
        Returns the updated thread row, or None when the organisation has no such thread.
        """
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT tags FROM threads WHERE id = ? AND org_id = ?", (thread_id, org_id)
            ).fetchone()
            if row is None:
                return None
            tags = list(changes["tags"]) if "tags" in changes else json.loads(row["tags"] or "[]")
            tags = list(dict.fromkeys([*tags, *(add or [])]))
            removed = set(remove or [])
            tags = [t for t in tags if t not in removed]
            if len(tags) > MAX_TAGS:
                raise TooManyTags(f"a thread holds at most {MAX_TAGS} tags")
            columns = {k: v for k, v in changes.items() if k in ("status", "assigned_to")}
            columns["tags"] = json.dumps(tags)
            assignments = ", ".join(f"{name} = :{name}" for name in columns)
            conn.execute(
                f"UPDATE threads SET {assignments} WHERE id = :_id AND org_id = :_org",
                {**columns, "_id": thread_id, "_org": org_id},
            )
            relabel(conn, "thread_id = ? AND +org_id = ?", (thread_id, org_id), *labels)
            return conn.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone()

    def relabel_message(self, org_id: str, message_id: str, add: list[str], remove: list[str]) -> sqlite3.Row | None:
        """Add and remove labels on one message; returns it, or None when the organisation has no such message."""
        with self.database.transaction() as conn:
            relabel(conn, "id = ? AND org_id = ?", (message_id, org_id), add, remove)
            return conn.execute("SELECT * FROM messages WHERE id = ? AND org_id = ?", (message_id, org_id)).fetchone()
