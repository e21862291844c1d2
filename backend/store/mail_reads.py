"""Read side of the mail store: keyset-paged lists, thread messages, search, attachments.

Every list is one indexed range scan: equality on the filter columns, then the keyset written as a
row value `(a, b) < (?, ?)` so the cost of a page does not depend on how deep it is. Where the
filter column has a better index than `org_id`, the org check is written `+org_id`: still a filter
on every row, but no longer a candidate index the planner could wrongly prefer.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from .database import Database

# Search walks matching messages newest first and stops after this many, so a word found in
# millions of rows (or in other organisations' mail) still answers in bounded time.
SEARCH_SCAN_LIMIT = 20_000
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


def safe_filename(name: str) -> str:
    """A filename with no path components or control characters, never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_FILENAME.sub("_", base).strip().lstrip(".")
    return cleaned[:255] or "attachment"


def fts_query(text: str) -> str:
    """The user's words as quoted FTS5 terms (implicit AND), so no input is FTS syntax."""
    # NUL ends an FTS5 string early, so it is the one character quoting cannot neutralise.
    terms = text.replace("\0", " ").split()
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


THREAD_JSON_SQL = (
    "json_object('thread_id', id, 'subject', subject, 'last_message_at', last_message_at,"
    " 'first_message_at', first_message_at, 'message_count', message_count, 'snippet', snippet,"
    " 'last_direction', last_direction, 'last_sender', last_sender, 'inbox_id', inbox_id,"
    " 'domain_id', domain_id, 'has_attachments', json(CASE WHEN has_attachments THEN 'true' ELSE 'false' END),"
    " 'unread_count', unread_count, 'tags', json(CASE WHEN json_valid(tags) THEN tags ELSE '[]' END),"
    " 'status', status, 'assigned_to', assigned_to,"
    " 'id', id, 'participantCount', participant_count, 'lastActivityAt', last_message_at)"
)
"""A thread summary as JSON text, exactly what `models.mail.thread_json` builds from a row."""


def _thread_page_sql(
    columns: str,
    org_id: str,
    inbox_id: str | None,
    domain_id: str | None,
    order: str,
    limit: int,
    after: tuple[str, str] | None,
) -> tuple[str, tuple]:
    """The keyset page query over `threads` by inbox (and/or domain)."""
    if inbox_id is not None:
        # `+org_id` keeps the planner on the inbox index; the org check stays a plain filter.
        where, params = "inbox_id = ? AND +org_id = ?", [inbox_id, org_id]
        if domain_id is not None:
            where += " AND domain_id = ?"
            params.append(domain_id)
    else:
        where, params = "org_id = ? AND domain_id = ?", [org_id, domain_id]
    cond, order_by, extra = _keyset(order, "last_message_at, id", after)
    return f"SELECT {columns} FROM threads WHERE {where}{cond}{order_by} LIMIT ?", (*params, *extra, limit)


def _dicts(database: Database, sql: str, params: tuple) -> list[dict[str, Any]]:
    """Rows as plain dicts: a page maps every column by name, and a dict lookup costs a third of a Row's."""
    cursor = database.conn.cursor()
    cursor.row_factory = None
    try:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _keyset(order: str, columns: str, after: tuple | None) -> tuple[str, str, tuple]:
    """The row-value condition and ORDER BY for one page in `order`, continuing after `after`."""
    direction = "DESC" if order == "desc" else "ASC"
    first, second = (c.strip() for c in columns.split(","))
    order_by = f" ORDER BY {first} {direction}, {second} {direction}"
    if after is None:
        return "", order_by, ()
    op = "<" if order == "desc" else ">"
    return f" AND ({first}, {second}) {op} (?, ?)", order_by, tuple(after)


class MailReads:
    """Queries of the mail aggregate; every one filters on the caller's organisation."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # threads -------------------------------------------------------------------------------
    def get_thread(self, org_id: str, thread_id: str) -> sqlite3.Row | None:
        """One thread of the organisation, or None."""
        return self.database.one("SELECT * FROM threads WHERE id = ? AND org_id = ?", (thread_id, org_id))

    def list_threads_json(
        self,
        org_id: str,
        inbox_id: str | None,
        domain_id: str | None,
        order: str,
        limit: int,
        after: tuple[str, str] | None = None,
    ) -> list[tuple[str, str, str]]:
        """Up to `limit` threads by last activity after the keyset `after`, as `(last_message_at, id, JSON)`.

        SQLite builds the JSON (`THREAD_JSON_SQL`, kept equal to `models.mail.thread_json` by a test):
        half the cost of building Python dicts and encoding them, on the API's busiest list.
        """
        sql, params = _thread_page_sql(f"last_message_at, id, {THREAD_JSON_SQL}", org_id, inbox_id, domain_id,
                                       order, limit, after)
        cursor = self.database.conn.cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, params).fetchall()
        finally:
            cursor.close()

    def thread_messages(self, org_id: str, thread_id: str, order: str, limit: int,
                        after: tuple[str, int] | None = None) -> list[dict[str, Any]]:
        """A page of a thread's messages in time order, after the keyset `after`."""
        cond, order_by, extra = _keyset(order, "created_at, seq", after)
        return _dicts(
            self.database, f"SELECT * FROM messages WHERE thread_id = ? AND +org_id = ?{cond}{order_by} LIMIT ?",
            (thread_id, org_id, *extra, limit),
        )

    def last_message_ids(self, thread_id: str) -> tuple[str | None, list[str]]:
        """The newest SMTP Message-ID in a thread and its References chain (for a reply's headers)."""
        row = self.database.one(
            "SELECT smtp_message_id, refs FROM messages WHERE thread_id = ? AND smtp_message_id IS NOT NULL"
            " ORDER BY created_at DESC, seq DESC LIMIT 1",
            (thread_id,),
        )
        if row is None:
            return None, []
        return row["smtp_message_id"], json.loads(row["refs"] or "[]")

    # messages --------------------------------------------------------------------------------
    def get_message(self, org_id: str, message_id: str) -> sqlite3.Row | None:
        """One message of the organisation, or None."""
        return self.database.one("SELECT * FROM messages WHERE id = ? AND org_id = ?", (message_id, org_id))

    def list_messages(
        self,
        org_id: str,
        *,
        inbox_id: str | None = None,
        domain_id: str | None = None,
        sender: str | None = None,
        before: str | None = None,
        since: str | None = None,
        order: str = "desc",
        limit: int = 50,
        after: tuple[str, int] | None = None,
    ) -> list[sqlite3.Row]:
        """Messages matching every given filter; the most selective one leads (its index is used)."""
        filters: list[tuple[str, Any]] = []
        if inbox_id is not None:
            filters += [("inbox_id = ?", inbox_id), ("+org_id = ?", org_id)]
        elif sender is not None:
            filters += [("org_id = ?", org_id), ("sender = ?", sender)]
        else:
            filters += [("org_id = ?", org_id), ("domain_id = ?", domain_id)]
        if sender is not None and inbox_id is not None:
            filters.append(("sender = ?", sender))
        if domain_id is not None and (inbox_id is not None or sender is not None):
            filters.append(("domain_id = ?", domain_id))
        if before is not None:
            filters.append(("created_at < ?", before))
        if since is not None:
            filters.append(("created_at > ?", since))
        where = " AND ".join(f for f, _ in filters)
        cond, order_by, extra = _keyset(order, "created_at, seq", after)
        return self.database.query(
            f"SELECT * FROM messages WHERE {where}{cond}{order_by} LIMIT ?",
            (*(v for _, v in filters), *extra, limit),
        )

    # search ---------------------------------------------------------------------------------
    def search_threads(
        self, org_id: str, text: str, inbox_id: str | None, domain_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Threads with a message matching `text`, by their newest matching message first; each carries
        `score`, how many of its messages match."""
        query = fts_query(text)
        if not query:
            return []
        cursor = self.database.execute(
            "SELECT m.thread_id, m.org_id, m.inbox_id, m.domain_id FROM messages_fts"
            " JOIN messages m ON m.seq = messages_fts.rowid"
            f" WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT {SEARCH_SCAN_LIMIT}",
            (query,),
        )
        wanted: dict[str, None] = {}
        try:
            for row in cursor:
                if (row["org_id"] == org_id and (inbox_id is None or row["inbox_id"] == inbox_id)
                        and (domain_id is None or row["domain_id"] == domain_id)):
                    wanted.setdefault(row["thread_id"])
                    if len(wanted) >= limit:
                        break
        finally:
            cursor.close()
        if not wanted:
            return []
        ids = list(wanted)
        marks = ",".join("?" * len(ids))
        rows = self.database.query(f"SELECT * FROM threads WHERE +org_id = ? AND id IN ({marks})", (org_id, *ids))
        # Each found thread's own messages, checked against the index by rowid (CROSS JOIN keeps that order),
        # so counting never walks the word's whole posting list.
        scores = dict(self.database.query(
            "SELECT m.thread_id, COUNT(*) FROM messages m CROSS JOIN messages_fts"
            f" WHERE m.thread_id IN ({marks}) AND messages_fts.rowid = m.seq AND messages_fts MATCH ?"
            " GROUP BY m.thread_id",
            (*ids, query),
        ))
        by_id = {row["id"]: row for row in rows}
        return [{**dict(by_id[i]), "score": scores.get(i, 0)} for i in ids if i in by_id]

    # attachments ------------------------------------------------------------------------------
    def get_attachment(self, org_id: str, attachment_id: str) -> dict | None:
        """One attachment of the organisation, or None."""
        row = self.database.one("SELECT * FROM attachments WHERE id = ? AND org_id = ?", (attachment_id, org_id))
        return dict(row) if row else None

    def get_attachment_any(self, attachment_id: str) -> dict | None:
        """An attachment by id alone; only for the signed download route, whose signature is the check."""
        row = self.database.one("SELECT * FROM attachments WHERE id = ?", (attachment_id,))
        return dict(row) if row else None

    def attachments_by_ids(self, org_id: str, ids: list[str]) -> list[dict]:
        """The organisation's attachments among `ids`, in the order given (unknown ids left out)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.database.query(f"SELECT * FROM attachments WHERE +org_id = ? AND id IN ({marks})",
                                   (org_id, *ids))
        by_id = {row["id"]: dict(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]
