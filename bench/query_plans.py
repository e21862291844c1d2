"""EXPLAIN QUERY PLAN and page cost of every mail list query, first page and deep in the mailbox.

Each query is run through the store exactly as the API runs it; the SQL is captured from SQLite's
trace hook with its parameters, then explained. A page deep in the mailbox should cost what the
first one does (keyset pagination on an index).

    python3 bench/query_plans.py --messages 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.store.database import Database
from backend.store.mail_reads import LabelFilter, MailReads
from bench.common import CACHE_DIR
from bench.seed import Seeded, seed

FLAGGED = LabelFilter(("flagged",))


def timed(call: Callable[[], object], repeat: int = 200) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _explain(database: Database, call: Callable[[], object]) -> list[tuple[str, list[str]]]:
    """The statements `call` runs (parameters inlined by SQLite) and the plan of each."""
    statements: list[str] = []
    database.conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        database.conn.set_trace_callback(None)
    return [(sql, [row["detail"] for row in database.query("EXPLAIN QUERY PLAN " + sql)])
            for sql in statements if sql.lstrip().upper().startswith("SELECT")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args(argv)
    data_dir = CACHE_DIR / f"mailbox-{args.messages}"
    info = Seeded.load(data_dir) or seed(data_dir, args.messages)
    database = Database(data_dir / "commune.db")
    reads = MailReads(database)
    org, inbox, domain = info.org_id, info.inbox_id, info.domain_id
    deep = database.one("SELECT last_message_at, id FROM threads WHERE inbox_id = ?"
                        " ORDER BY last_message_at, id LIMIT 1 OFFSET ?", (inbox, info.threads // 2))
    deep_message = database.one("SELECT created_at, seq FROM messages WHERE inbox_id = ?"
                                " ORDER BY created_at, seq LIMIT 1 OFFSET ?", (inbox, info.messages // 2))
    sender = database.one("SELECT sender FROM messages WHERE inbox_id = ? LIMIT 1", (inbox,))["sender"]
    keyset = (deep["last_message_at"], deep["id"])
    message_keyset = (deep_message["created_at"], deep_message["seq"])
    queries: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("threads by inbox", lambda: reads.list_threads_json(org, inbox, None, "desc", 21),
         lambda: reads.list_threads_json(org, inbox, None, "desc", 21, keyset)),
        ("threads by domain", lambda: reads.list_threads_json(org, None, domain, "asc", 21),
         lambda: reads.list_threads_json(org, None, domain, "asc", 21, keyset)),
        ("thread messages", lambda: reads.thread_messages(org, info.middle_thread_id, "asc", 51),
         lambda: reads.thread_messages(org, info.last_thread_id, "asc", 51)),
        ("messages by inbox", lambda: reads.list_messages(org, inbox_id=inbox, limit=51),
         lambda: reads.list_messages(org, inbox_id=inbox, limit=51, after=message_keyset)),
        ("messages by domain", lambda: reads.list_messages(org, domain_id=domain, limit=51),
         lambda: reads.list_messages(org, domain_id=domain, limit=51, after=message_keyset)),
        ("messages by sender", lambda: reads.list_messages(org, sender=sender, limit=51),
         lambda: reads.list_messages(org, sender=sender, limit=51, before="2999-01-01T00:00:00.000Z")),
        ("inbox counts", lambda: reads.inbox_counts([inbox]), lambda: reads.inbox_counts([inbox])),
        ("threads labelled flagged", lambda: reads.list_threads_json(org, inbox, None, "desc", 21, None, FLAGGED),
         lambda: reads.list_threads_json(org, inbox, None, "desc", 21, keyset, FLAGGED)),
        ("search, common word", lambda: reads.search_threads(org, info.common_word, inbox, None, 20),
         lambda: reads.search_threads(org, info.common_word, None, domain, 20)),
        ("search, rare word", lambda: reads.search_threads(org, info.rare_word, inbox, None, 20),
         lambda: reads.search_threads(org, info.rare_word, None, None, 20)),
    ]
    print(f"mailbox: {info.messages} messages in {info.threads} threads ({data_dir})")
    for name, first, later in queries:
        print(f"\n== {name}: first page {timed(first):.3f} ms, deep page {timed(later):.3f} ms (median)")
        for sql, plan in _explain(database, later):
            text = " ".join(sql.split())
            print(f"  {text if len(text) <= 400 else text[:400] + ' …'}")
            for line in plan:
                print(f"    {line}")
    database.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
