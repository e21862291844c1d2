"""Pairs of adjacent Chinese, Japanese and Korean characters of each message, for search.

Words in these scripts are often two characters long, and the trigram index finds only strings of three
or more; `message_bigrams` holds every adjacent pair of CJK characters (ideographs, kana, hangul) of a
message's subject, body and attachment names, written with the message. Mail stored before the table
existed is indexed once at start (`index_backlog`), in batches.
"""

from __future__ import annotations

import re
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .database import Database

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
"""Hiragana, katakana, CJK ideographs (and extension A, compatibility), hangul syllables."""
_RUN = re.compile(f"[{CJK}]{{2,}}")
CJK_GLOB = f"*[{CJK}]*"
"""A GLOB pattern matching text that holds at least one CJK character."""
BACKLOG_BATCH = 500
MAX_PAIRS = 20_000
"""Distinct pairs indexed per message, so a hostile body of random characters cannot add millions of rows."""


def is_bigram(text: str) -> bool:
    """Whether `text` is exactly two CJK characters (what this index can answer)."""
    return len(text) == 2 and _RUN.fullmatch(text) is not None


def bigrams(*texts: str) -> set[str]:
    """The pairs of adjacent CJK characters in the texts (at most about MAX_PAIRS of them)."""
    found: set[str] = set()
    for text in texts:
        if not text or text.isascii():  # most mail: no regex pass over the body at all
            continue
        for run in _RUN.findall(text):
            room = MAX_PAIRS - len(found)
            found.update(run[i:i + 2] for i in range(min(len(run) - 1, room)))
            if len(found) >= MAX_PAIRS:
                return found
    return found


def index_message(conn: sqlite3.Connection, seq: int, subject: str, text: str, filenames: str,
                  new: bool = False) -> None:
    """(Re)index one message's pairs, inside the caller's transaction; a `new` row has none to replace."""
    if not new:
        conn.execute("DELETE FROM message_bigrams WHERE seq = ?", (seq,))
    pairs = bigrams(subject, text, filenames)
    if pairs:
        conn.executemany("INSERT OR IGNORE INTO message_bigrams (bigram, seq) VALUES (?, ?)",
                         [(pair, seq) for pair in pairs])


def index_backlog(database: Database) -> int:
    """Index the mail stored before the table existed (`bigram_backlog.below`: messages below that
    `seq`), newest first, one transaction per batch; returns how many messages were indexed."""
    done = 0
    while True:
        row = database.one("SELECT below FROM bigram_backlog")
        if row is None:
            return done
        batch = database.query(
            "SELECT seq, subject, text_body, filenames FROM messages WHERE seq < ?"
            " AND (subject || ' ' || text_body || ' ' || filenames) GLOB ? ORDER BY seq DESC LIMIT ?",
            (row[0], CJK_GLOB, BACKLOG_BATCH),
        )
        with database.transaction() as conn:
            for message in batch:
                index_message(conn, message[0], message[1], message[2], message[3])
            if len(batch) < BACKLOG_BATCH:
                conn.execute("DELETE FROM bigram_backlog")
            else:
                conn.execute("UPDATE bigram_backlog SET below = ?", (batch[-1][0],))
        done += len(batch)
