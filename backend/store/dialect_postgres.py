"""SQL that differs by engine, for PostgreSQL: the same names as backend/store/dialect_sqlite.py.

Words are found through two expression indexes on `messages` (backend/store/pg_migrations.py): a
`tsvector` GIN index of whole words (`commune_words`) and a `pg_trgm` GIN index of the case-folded
subject, body, sender and file names (`commune_search_text`) for substrings, also in Chinese, Japanese
and Korean text. Both follow every insert, update and delete by themselves.
"""

from __future__ import annotations

from typing import Any

from .bigrams import is_bigram

NAME = "postgresql"

skip_locked = " FOR UPDATE SKIP LOCKED"
"""Appended to a claim's subquery: rows another transaction is claiming are passed over."""

for_update = " FOR UPDATE"
"""Appended to a read whose rows the transaction goes on to change on what it read: other writers wait."""

THREAD_JSON_SQL = (
    "json_build_object('thread_id', id, 'subject', subject, 'last_message_at', last_message_at,"
    " 'first_message_at', first_message_at, 'message_count', message_count, 'snippet', snippet,"
    " 'last_direction', last_direction, 'last_sender', last_sender,"
    " 'last_sender_name', last_sender_name, 'inbox_id', inbox_id,"
    " 'domain_id', domain_id, 'has_attachments', has_attachments != 0,"
    " 'unread_count', unread_count, 'tags', CASE WHEN json_valid(tags) THEN tags::json ELSE '[]'::json END,"
    " 'status', status, 'assigned_to', assigned_to, 'labels', labels::json,"
    " 'id', id, 'participantCount', participant_count, 'lastActivityAt', last_message_at)::text"
)
"""A thread summary as JSON text, exactly what `models.mail.thread_json` builds from a row."""

TRIGRAM = 3
SEARCH_TEXT = "commune_search_text(m.subject, m.text_body, m.sender, m.filenames)"


def like_pattern(value: str) -> str:
    """`%value%` for LIKE, its own `%`, `_` and `\\` taken literally."""
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def contains(column: str, value: str) -> tuple[str, str]:
    """`column` contains `value` in any case (both folded by the database, alike)."""
    if value.isascii():
        return f"instr(lower({column}), ?) > 0", value.lower()
    return f"instr(commune_fold({column}), commune_fold(?)) > 0", value


def _substring(value: str) -> tuple[str, list]:
    return f"{SEARCH_TEXT} LIKE commune_fold(?)", [like_pattern(value)]


def word(value: str) -> tuple[str, list]:
    """A search word as a condition on the message `m` (see dialect_sqlite.word)."""
    if len(value) >= TRIGRAM:
        return _substring(value)
    if value.isascii():
        return ("commune_words(m.subject, m.text_body, m.sender) @@ phraseto_tsquery('simple', ?)",
                [value])
    if is_bigram(value):
        return "m.seq IN (SELECT seq FROM message_bigrams WHERE bigram = ?)", [value]
    parts = [contains(column, value) for column in ("m.subject", "m.text_body", "m.filenames")]
    return "(" + " OR ".join(sql for sql, _ in parts) + ")", [param for _, param in parts]


def search_lead(wanted: list[str], unwanted: list[str]) -> tuple[str, str, list, str]:
    """The search scan led by the trigram index (see dialect_sqlite.search_lead)."""
    lead, params = "", []
    for value, negated in [*((v, False) for v in wanted), *((v, True) for v in unwanted)]:
        sql, values = _substring(value)
        lead += f"NOT ({sql}) AND " if negated else f"{sql} AND "
        params += values
    return "messages m", lead, params, "m.seq DESC"


def message_text_changed(conn: Any, seq: int, old: tuple[str, str, str], new: tuple[str, str, str]) -> None:
    """Nothing to do: the word and trigram indexes are expression indexes on the row itself."""


def scan_lock(table: str) -> str | None:
    """A statement that makes a reader of `table`'s newest rows wait for transactions still inserting into
    it. An identity value is taken at insert, not at commit, so without it a scan up to MAX(rowid) could
    pass a row another node commits a moment later; EXCLUSIVE mode waits for those inserts and holds new
    ones back for the scan's short transaction (reads go on)."""
    return f"LOCK TABLE {table} IN EXCLUSIVE MODE"


def wait_for_same(conn: Any, key: str) -> None:
    """Make a transaction about to store `key` (a message's inbox and Message-ID) wait for another
    node's transaction storing the same key, so that it then finds the row instead of failing on the
    unique index: a transaction-scoped advisory lock on the key's hash."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))
