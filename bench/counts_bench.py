"""Inbox counts server-side: `{threads, unread_threads, flagged_threads, trash_threads}` of an inbox of
100 000 threads, as the inbox JSON reads them (the counters in `inbox_counts`), checked against a recount.

    python3 bench/counts_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.store.database import Database
from backend.store.mail_reads import LabelFilter, MailReads
from bench.common import CACHE_DIR, Figure, print_table
from bench.query_plans import timed
from bench.seed import seed

TARGET_MS = 20


def recount(database: Database, inbox_id: str) -> dict[str, int]:
    """The same figures the slow way, straight from the threads' own label lists."""
    def count(where: str) -> int:
        return database.one(f"SELECT COUNT(*) FROM threads WHERE inbox_id = ? AND {where}", (inbox_id,))[0]

    visible = "hidden = 0"
    return {"threads": count(visible),
            "unread_threads": count(f"{visible} AND instr(labels, '\"unread\"') > 0"),
            "flagged_threads": count(f"{visible} AND instr(labels, '\"flagged\"') > 0"),
            "trash_threads": count("instr(labels, '\"trash\"') > 0")}


def run(quick: bool = False) -> list[Figure]:
    threads = 10_000 if quick else 100_000
    info = seed(CACHE_DIR / f"threads-{threads}", threads, per_thread=1)
    database = Database(Path(info.data_dir) / "commune.db")
    try:
        reads = MailReads(database)
        counts = reads.inbox_counts([info.inbox_id])[info.inbox_id]
        if counts != recount(database, info.inbox_id):
            raise AssertionError(f"counts {counts} differ from a recount {recount(database, info.inbox_id)}")
        counting = timed(lambda: reads.inbox_counts([info.inbox_id]), repeat=30)
        flagged = LabelFilter(("flagged",))
        page = timed(lambda: reads.list_threads_json(info.org_id, info.inbox_id, None, "desc", 51, None, flagged),
                     repeat=30)
    finally:
        database.close()
    return [
        Figure(f"inbox counts, {threads} threads ({counts['unread_threads']} unread, "
               f"{counts['trash_threads']} in the trash), median", f"{counting:.3f} ms", f"< {TARGET_MS} ms",
               counting < TARGET_MS),
        Figure(f"threads labels=flagged, first page of 50, {threads} threads", f"{page:.2f} ms", "", None),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 000 threads instead of 100 000")
    args = parser.parse_args(argv)
    figures = run(args.quick)
    print_table(figures, "inbox counts")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
