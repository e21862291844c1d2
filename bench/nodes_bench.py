"""SMTP ingest on PostgreSQL: one node, then two nodes on the same database beside it.

Each node is a `commune-server serve --database …` process with its own data directory and SMTP port,
as behind several MX records. The same number of 5 KB messages goes first to one node over 32
connections, then to two nodes at once (16 connections each); the figure is messages/s over the
whole batch and server CPU per message (both nodes' processes), and every message answered 250 must be
stored exactly once. A figure, not a target: on a small machine the nodes, PostgreSQL and the clients
share the same cores, so a second node shows what coordination costs rather than what it adds.

    python3 bench/nodes_bench.py --database postgresql://…|embedded [--quick] [--messages 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psycopg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, ServerProcess, print_table
from bench.postgres import Postgres
from bench.smtp_bench import CONNECTIONS, Api, IngestResult, deliver, make_message


async def _deliver_split(ports: list[int], recipient: str, messages: list[bytes]) -> IngestResult:
    """The messages spread evenly over the nodes, CONNECTIONS sessions in all, timed as one batch."""
    began = time.perf_counter()
    shares = await asyncio.gather(*(
        deliver(port, recipient, messages[index::len(ports)], CONNECTIONS // len(ports))
        for index, port in enumerate(ports)))
    elapsed = time.perf_counter() - began
    accepted = [number for share in shares for number in share.accepted]
    return IngestResult(len(accepted) / elapsed, max(s.p50 for s in shares), max(s.p99 for s in shares),
                        accepted, sum(s.refused for s in shares))


def _stored(url: str, run: str) -> tuple[int, int]:
    """How many of this run's messages the database holds, and how many distinct Message-IDs."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT smtp_message_id) FROM messages"
                           " WHERE smtp_message_id LIKE %s", (f"<{run}-%",)).fetchone()
    return int(row[0]), int(row[1])


def run(database: str, quick: bool = False, messages: int | None = None) -> list[Figure]:
    count = messages or (1000 if quick else 4000)
    postgres = Postgres(database)
    url = postgres.database("nodes", fresh=True)
    run_id = f"n{int(time.time())}"
    per_client = {"COMMUNE_SMTP_MAX_CONNECTIONS_PER_CLIENT": str(CONNECTIONS)}
    rounds: dict[str, tuple[IngestResult, float]] = {}
    with tempfile.TemporaryDirectory(prefix="commune-nodes-bench-") as tmp:
        nodes = [ServerProcess(Path(tmp) / name, "--database", url, env=per_client) for name in ("a", "b")]
        for node in nodes:
            node.data_dir.mkdir()
        try:
            first = nodes[0].start(want_smtp=True)
            admin = Api(first.port, (first.data_dir / "admin.key").read_text().strip())
            recipient = admin.call("POST", "/v1/inboxes", {"local_part": "bench"})["data"]["address"]
            batches = {name: [make_message(n, f"{run_id}-{name}", recipient) for n in range(count)]
                       for name in ("warm", "one", "two")}
            asyncio.run(deliver(first.smtp_port, recipient, batches["warm"][:200], CONNECTIONS))
            before = first.cpu_seconds()
            result = asyncio.run(deliver(first.smtp_port, recipient, batches["one"], CONNECTIONS))
            rounds["one node"] = (result, first.cpu_seconds() - before)
            second = nodes[1].start(want_smtp=True)
            asyncio.run(deliver(second.smtp_port, recipient, batches["warm"][200:400], CONNECTIONS))
            before = first.cpu_seconds() + second.cpu_seconds()
            result = asyncio.run(_deliver_split([first.smtp_port, second.smtp_port], recipient,
                                                batches["two"]))
            rounds["two nodes"] = (result, first.cpu_seconds() + second.cpu_seconds() - before)
        finally:
            for node in nodes:
                node.stop()
    figures = []
    for name, (result, cpu) in rounds.items():
        stored, distinct = _stored(url, f"{run_id}-{name.split()[0]}")
        per_message = cpu / max(1, len(result.accepted))
        figures.append(Figure(
            f"nodes smtp 5 KB on PostgreSQL: {name}",
            f"{result.rate:,.0f} msg/s, p50 {result.p50 * 1000:.1f} ms, p99 {result.p99 * 1000:.1f} ms,"
            f" server CPU {per_message * 1000:.2f} ms/msg" + (f", {result.refused} refused" if result.refused else "")))
        figures.append(Figure(f"nodes smtp: {name}, answered 250 / stored / distinct",
                              f"{len(result.accepted)} / {stored} / {distinct}",
                              "all equal", len(result.accepted) == stored == distinct))
    one, two = rounds["one node"][0].rate, rounds["two nodes"][0].rate
    figures.append(Figure("nodes smtp: two nodes / one node", f"{two / one if one else 0:.2f}x"))
    postgres.drop("nodes")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="postgresql://… or 'embedded' (bench/postgres.py)")
    parser.add_argument("--quick", action="store_true", help="1 000 messages per round")
    parser.add_argument("--messages", type=int, help="5 KB messages per round (default 4 000)")
    args = parser.parse_args(argv)
    print_table(run(args.database, args.quick, args.messages), "SMTP ingest, one and two nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
