"""Run every benchmark and print one table: figure, value, target, met?

    python3 bench/run_all.py            # default sizes, about 10 minutes on a 2-core machine
    python3 bench/run_all.py --quick    # a smoke run of about a minute
    python3 bench/run_all.py --full     # adds the 1 M-message scale run (seeding takes minutes)
    python3 bench/run_all.py --only http,scale
    python3 bench/run_all.py --database embedded   # adds the scale and SMTP figures on PostgreSQL

A benchmark that fails prints its error as a row and the others still run.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    counts_bench,
    fanout_bench,
    http_bench,
    outbox_bench,
    scale_bench,
    send_bench,
    smtp_bench,
    tui_bench,
)
from bench.common import Figure, print_table

BENCHES: dict[str, Callable[[bool, bool], list[Figure]]] = {
    "http": lambda quick, full: http_bench.run(quick),
    "smtp": lambda quick, full: smtp_bench.run(quick),
    "scale": lambda quick, full: scale_bench.run(quick, full),
    "send": lambda quick, full: send_bench.run(quick),
    "fanout": lambda quick, full: fanout_bench.run(quick),
    "outbox": lambda quick, full: outbox_bench.run(quick),
    "tui": lambda quick, full: tui_bench.run(quick) + tui_bench.run_opening(quick),
    "counts": lambda quick, full: counts_bench.run(quick),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every Commune benchmark and print one table.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, short runs (about a minute)")
    size.add_argument("--full", action="store_true", help="include the 1 M-message scale run")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--database", help="postgresql://… or 'embedded': also run the scale and SMTP"
                                           " benchmarks on PostgreSQL (bench/postgres.py)")
    args = parser.parse_args(argv)
    if args.database:
        from bench import nodes_bench

        database = args.database
        BENCHES["scale PostgreSQL"] = lambda quick, full: scale_bench.run(quick, full, database=database)
        BENCHES["nodes"] = lambda quick, full: nodes_bench.run(database, quick)
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    print(f"Commune benchmarks on {platform.node()}: Python {platform.python_version()},"
          f" SQLite {sqlite3.sqlite_version}, {platform.machine()}")
    figures: list[Figure] = []
    began = time.perf_counter()
    for name in chosen:
        started = time.perf_counter()
        try:
            found = BENCHES[name](args.quick, args.full)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            found = [Figure(f"{name}: FAILED", f"{type(exc).__name__}: {exc}"[:120], "", False)]
        print_table(found, f"{name} ({time.perf_counter() - started:.0f} s)")
        figures += found
    print_table(figures, f"All figures ({time.perf_counter() - began:.0f} s)")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
