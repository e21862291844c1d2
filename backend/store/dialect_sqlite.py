"""SQL that differs by engine, for SQLite: FTS5 word and trigram indexes, JSON built by SQLite.

backend/store/dialect_postgres.py holds the same names for PostgreSQL; stores reach them through
`database.dialect`, never by testing the engine.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .bigrams import is_bigram

NAME = "sqlite"

skip_locked = ""
"""Nothing to add: SQLite has one writer at a time, so claims never overlap."""

for_update = ""
"""Nothing to add: a SQLite write transaction already excludes every other writer."""

THREAD_JSON_SQL = (
    "json_object('thread_id', id, 'subject', subject, 'last_message_at', last_message_at,"
    " 'first_message_at', first_message_at, 'message_count', message_count, 'snippet', snippet,"
    " 'last_direction', last_direction, 'last_sender', last_sender,"
    " 'last_sender_name', last_sender_name, 'inbox_id', inbox_id,"
    " 'domain_id', domain_id, 'has_attachments', json(CASE WHEN has_attachments THEN 'true' ELSE 'false' END),"
    " 'unread_count', unread_count, 'tags', json(CASE WHEN json_valid(tags) THEN tags ELSE '[]' END),"
    " 'status', status, 'assigned_to', assigned_to, 'labels', json(labels),"
    " 'id', id, 'participantCount', participant_count, 'lastActivityAt', last_message_at)"
)
"""A thread summary as JSON text, exactly what `models.mail.thread_json` builds from a row."""

TRIGRAM = 3


def phrase(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def contains(column: str, value: str) -> tuple[str, str]:
    """`column` contains `value` in any case: SQLite's lower() when the value is ASCII (the column's other
    letters cannot match it anyway), else Unicode case folding (a Python function, slower)."""
    if value.isascii():
        return f"instr(lower({column}), ?) > 0", value.lower()
    if value.casefold() == value == value.upper():
        return f"instr({column}, ?) > 0", value  # no letter of it has a case (Chinese, Japanese, Korean)
    return f"instr(casefold({column}), ?) > 0", value.casefold()


def word(value: str) -> tuple[str, list]:
    """A search word as a condition on the message `m`: the trigram index for three characters or more,
    the word index for shorter ASCII words, the CJK pair index for two CJK characters, else substrings."""
    if len(value) >= TRIGRAM:
        return ("m.seq IN (SELECT rowid FROM messages_trigram WHERE messages_trigram MATCH ?)", [phrase(value)])
    if value.isascii():
        return ("m.seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)", [phrase(value)])
    if is_bigram(value):
        return "m.seq IN (SELECT seq FROM message_bigrams WHERE bigram = ?)", [value]
    parts = [contains(column, value) for column in ("m.subject", "m.text_body", "m.filenames")]
    return "(" + " OR ".join(sql for sql, _ in parts) + ")", [param for _, param in parts]


def search_lead(wanted: list[str], unwanted: list[str]) -> tuple[str, str, list, str]:
    """The search scan led by the trigram index: `(source, lead, params, order)` for the words of
    three characters or more that every match holds (`wanted`) or lacks (`unwanted`)."""
    fts = " AND ".join(phrase(v) for v in wanted) + "".join(f" NOT {phrase(v)}" for v in unwanted)
    # CROSS JOIN keeps this order: the trigram index newest first, then each row, then its thread.
    return ("messages_trigram CROSS JOIN messages m ON m.seq = messages_trigram.rowid",
            "messages_trigram MATCH ? AND ", [fts], "messages_trigram.rowid DESC")


def message_text_changed(conn: sqlite3.Connection, seq: int, old: tuple[str, str, str],
                         new: tuple[str, str, str]) -> None:
    """Keep the word index in line after a message's (subject, text_body, sender) changed from `old` to
    `new` (the trigram index has its own trigger)."""
    conn.execute("INSERT INTO messages_fts(messages_fts, rowid, subject, text_body, sender)"
                 " VALUES ('delete', ?, ?, ?, ?)", (seq, *old))
    conn.execute("INSERT INTO messages_fts(rowid, subject, text_body, sender) VALUES (?, ?, ?, ?)", (seq, *new))


def scan_lock(table: str) -> str | None:
    """A statement that makes a reader of `table`'s newest rows wait for transactions still inserting into
    it: none here (one writer at a time, so every rowid below MAX(rowid) is committed)."""
    return None


def wait_for_same(conn: Any, key: str) -> None:
    """Make a transaction about to store `key` wait for another one storing the same key: nothing to do
    here, where one transaction writes at a time."""
