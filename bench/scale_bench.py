"""Mailbox scale: how page, thread and search latency and server memory grow from 10 k to 1 M messages.

Each size is seeded once by the bulk path (`seed.py`, cached under $COMMUNE_BENCH_CACHE), served by
`commune-server` in its own process, and timed through the real HTTP API over one keep-alive
connection: thread-list first page, a middle page and the last page (via cursor), a thread's messages,
search for a common word (in 90 % of messages) and a rare one (5 messages), then the server's RSS.

With `--database postgresql://…` (or `--database embedded`, a cluster the benchmark starts; see
bench/postgres.py) each seeded mailbox is moved into PostgreSQL with `commune-server copy` (once, kept
between runs) and the server runs on it, against PostgreSQL's targets.

    python3 bench/scale_bench.py [--quick | --full] [--sizes 10000,100000] [--database URL|embedded]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.api._paging import encode_cursor
from bench.common import CACHE_DIR, Figure, ServerProcess, percentile, print_table
from bench.seed import Seeded, seed

if TYPE_CHECKING:
    from bench.postgres import Postgres

PAGE = 20
DEFAULT_SIZES = (10_000, 100_000)
QUICK_SIZES = (10_000, 30_000)
FULL_SIZES = (10_000, 100_000, 1_000_000)
LIST_TARGET = 0.002
SEARCH_TARGET = 0.020
PG_LIST_TARGET = 0.005
PG_SEARCH_TARGET = 0.050
GROWTH_TARGET = 1.5
RSS_TARGET_MB = 150.0


class Timer:
    """Sequential GETs over one keep-alive connection, each timed from request to parsed JSON."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, path: str, query: dict[str, object] | None = None) -> tuple[float, dict]:
        target = path + ("?" + urlencode(query) if query else "")
        began = time.perf_counter()
        self.conn.request("GET", target, headers=self.headers)
        response = self.conn.getresponse()
        body = json.loads(response.read())
        elapsed = time.perf_counter() - began
        if response.status != 200:
            raise RuntimeError(f"GET {target} answered {response.status}: {body}")
        return elapsed, body

    def p50(self, samples: int, path: str, query: dict[str, object] | None = None) -> float:
        for _ in range(max(3, samples // 10)):
            self.get(path, query)
        return percentile([self.get(path, query)[0] for _ in range(samples)], 0.5)


def _cursor_before(info: Seeded, position: int) -> str:
    """The cursor a client would hold after reading `position` threads newest first."""
    conn = sqlite3.connect(Path(info.data_dir) / "commune.db")
    try:
        row = conn.execute(
            "SELECT last_message_at, id FROM threads WHERE inbox_id = ?"
            " ORDER BY last_message_at DESC, id DESC LIMIT 1 OFFSET ?",
            (info.inbox_id, max(0, position - 1)),
        ).fetchone()
    finally:
        conn.close()
    return encode_cursor(f"threads:{info.inbox_id}:", "desc", (row[0], row[1]))


def measure(messages: int, samples: int, postgres: Postgres | None = None) -> dict[str, float]:
    """Seed (or reuse) one mailbox size and time every operation; seconds, RSS in MB."""
    info = seed(CACHE_DIR / f"mailbox-{messages}", messages)
    middle = _cursor_before(info, info.threads // 2)
    last = _cursor_before(info, info.threads - PAGE)
    results: dict[str, float] = {"seed": info.seconds}
    with contextlib.ExitStack() as stack:
        if postgres is None:
            server = stack.enter_context(ServerProcess(Path(info.data_dir)).start())
        else:
            url, copy_seconds = postgres.copy_of(Path(info.data_dir), f"scale_{messages}")
            if copy_seconds is not None:
                results["copy"] = copy_seconds
            node = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="commune-scale-node-")))
            server = stack.enter_context(ServerProcess(node, "--database", url).start())
        timer = Timer(server.port, info.key)
        threads = {"inbox_id": info.inbox_id, "limit": PAGE}
        _, first_page = timer.get("/v1/threads", threads)
        _, last_page = timer.get("/v1/threads", {**threads, "cursor": last})
        if len(first_page["data"]) != PAGE or last_page["has_more"]:
            raise RuntimeError("the seeded mailbox does not page as expected")
        results["list first"] = timer.p50(samples, "/v1/threads", threads)
        results["list middle"] = timer.p50(samples, "/v1/threads", {**threads, "cursor": middle})
        results["list last"] = timer.p50(samples, "/v1/threads", {**threads, "cursor": last})
        results["thread messages"] = timer.p50(samples, f"/v1/threads/{info.middle_thread_id}/messages")
        for kind, word in (("common", info.common_word), ("rare", info.rare_word)):
            _, found = timer.get("/v1/search/threads", {"q": word, "inbox_id": info.inbox_id})
            if not found["data"]:
                raise RuntimeError(f"search for {word!r} found nothing")
            results[f"search {kind}"] = timer.p50(samples, "/v1/search/threads",
                                                  {"q": word, "inbox_id": info.inbox_id})
        results["rss"] = server.rss_mb()
    return results


def run(quick: bool = False, full: bool = False, sizes: tuple[int, ...] | None = None,
        database: str = "") -> list[Figure]:
    """Measure every size and return one figure per operation and size, targets on the largest."""
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES if full else DEFAULT_SIZES)
    samples = 40 if quick else 200
    postgres = None
    if database:
        from bench.postgres import Postgres  # the PostgreSQL driver: only for this run

        postgres = Postgres(database)
    by_size = {size: measure(size, samples, postgres) for size in sizes}
    scale = "scale" if postgres is None else "scale PostgreSQL"
    list_target, search_target = (LIST_TARGET, SEARCH_TARGET) if postgres is None else (
        PG_LIST_TARGET, PG_SEARCH_TARGET)
    smallest, largest = min(sizes), max(sizes)
    label = f"{largest // 1000:,} k" if largest < 1_000_000 else f"{largest / 1_000_000:g} M"
    figures = []
    for size in sizes:
        name = f"{size // 1000:,} k" if size < 1_000_000 else f"{size / 1_000_000:g} M"
        figures.append(Figure(f"scale {name}: bulk seeding", f"{by_size[size]['seed']:.1f} s"))
        if "copy" in by_size[size]:
            figures.append(Figure(f"{scale} {name}: commune-server copy into PostgreSQL",
                                  f"{by_size[size]['copy']:.1f} s"))
    for operation in ("list first", "list middle", "list last", "thread messages", "search common",
                      "search rare"):
        values = [by_size[s][operation] for s in sizes]
        grows = by_size[largest][operation] / by_size[smallest][operation]
        bound = search_target if operation.startswith("search") else list_target
        series = " / ".join(f"{v * 1000:.2f}" for v in values) + " ms"
        figures.append(Figure(f"{scale} {operation} p50 ({' / '.join(_k(s) for s in sizes)})", series,
                              f"< {bound * 1000:g} ms at {label}", by_size[largest][operation] < bound))
        if not operation.startswith("search"):
            figures.append(Figure(f"{scale} {operation}: {label} / {_k(smallest)} cost", f"{grows:.2f}x",
                                  f"<= {GROWTH_TARGET}x", grows <= GROWTH_TARGET))
    rss = " / ".join(f"{by_size[s]['rss']:.0f}" for s in sizes) + " MB"
    figures.append(Figure(f"{scale} server RSS ({' / '.join(_k(s) for s in sizes)})", rss,
                          f"< {RSS_TARGET_MB:g} MB at {label}", by_size[largest]["rss"] < RSS_TARGET_MB))
    return figures


def _k(size: int) -> str:
    return f"{size // 1000}k" if size < 1_000_000 else f"{size / 1_000_000:g}M"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="10 k and 30 k messages, fewer samples")
    group.add_argument("--full", action="store_true", help="10 k, 100 k and 1 M messages")
    parser.add_argument("--sizes", help="comma-separated mailbox sizes, e.g. 10000,100000")
    parser.add_argument("--database", default="",
                        help="postgresql://… or 'embedded': run the server on PostgreSQL (bench/postgres.py)")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    print_table(run(args.quick, args.full, sizes, args.database), "Mailbox scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
