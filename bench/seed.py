"""A fast bulk seeding path: threads and messages written straight into SQLite, not through the API.

Used by the scale and HTTP benchmarks, the TUI benchmark and the screenshot script. The organisation,
key and inbox are made by the server's own stores; the mail rows go in with `executemany` in large
transactions, and the full-text index is built once at the end (`rebuild`), which is what makes a
million messages take a minute rather than an hour.

    python3 -m bench.seed --messages 100000 --data-dir /tmp/box
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.config import Settings
from backend.services import Services
from backend.store.migrations import (
    INBOX_COUNTERS_FILL,
    INBOX_COUNTERS_TRIGGERS,
    INITIAL,
    MAIL_STATE_FILL,
    MAIL_STATE_TRIGGERS,
    statements,
)
from bench.common import CACHE_DIR

INFO_FILE = "bench-seed.json"
LAYOUT = 2
"""Bumped when the same size seeds different mail; a cached mailbox of an older layout is seeded again
(layout 2: the rare word lands in threads outside the trash, so searching for it finds them)."""
COMMON_WORD = "meeting"
"""In nine messages out of ten."""
RARE_WORD = "quetzalcoatl"
"""In RARE_COUNT messages spread evenly through the mailbox."""
RARE_COUNT = 5
BATCH = 50_000
START = datetime(2024, 1, 1, tzinfo=UTC)
FTS_TRIGGER = next(s for s in INITIAL.split("CREATE TRIGGER ")[1:] if s.startswith("messages_fts_insert"))
FTS_TRIGGER = "CREATE TRIGGER " + FTS_TRIGGER[: FTS_TRIGGER.index("END;") + 3]
STATE_TRIGGERS = statements(MAIL_STATE_TRIGGERS) + statements(INBOX_COUNTERS_TRIGGERS)
"""The label, trigram, contact and counter triggers: dropped while rows go in, the tables filled once,
then back."""


def labels_of(number: int, thread: int) -> str:
    """Two of three messages unread, one in twenty flagged, every fiftieth thread in the trash."""
    labels = ["received"]
    if number % 3:
        labels.append("unread")
    if number % 20 == 0:
        labels.append("flagged")
    if thread % 50 == 0:
        labels.append("trash")
    return json.dumps(sorted(labels))


@dataclass
class Seeded:
    """What a seeded data directory holds, saved beside the database as `bench-seed.json`."""

    data_dir: str
    messages: int
    threads: int
    key: str
    org_id: str
    inbox_id: str
    inbox_address: str
    domain_id: str
    first_thread_id: str
    middle_thread_id: str
    last_thread_id: str
    seconds: float = 0.0
    """How long the bulk seeding took."""
    common_word: str = COMMON_WORD
    rare_word: str = RARE_WORD
    layout: int = 1

    @classmethod
    def load(cls, data_dir: Path) -> Seeded | None:
        path = Path(data_dir) / INFO_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


def _stamp(seconds: int) -> str:
    moment = START + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _bodies(count: int, rng: random.Random) -> list[str]:
    """A pool of plausible bodies (a few hundred words' vocabulary), reused round-robin."""
    vocabulary = [
        "the", "a", "to", "of", "and", "in", "for", "on", "with", "at", "by", "from", "about",
        "project", "invoice", "report", "schedule", "update", "customer", "order", "shipping",
        "account", "review", "draft", "budget", "team", "quarter", "release", "deploy", "server",
        "login", "password", "reset", "ticket", "support", "refund", "contract", "sign", "attached",
        "please", "thanks", "regards", "tomorrow", "today", "monday", "friday", "week", "month",
        "deadline", "question", "answer", "status", "build", "test"
    ]
    vocabulary += [f"term{n}" for n in range(2000)]
    return [" ".join(rng.choices(vocabulary, k=60)) for _ in range(count)]


def _thread_id(number: int) -> str:
    return f"thread_{uuid.UUID(int=number + 1, version=4)}"


def seed(data_dir: Path, messages: int, per_thread: int = 4, seed_value: int = 1) -> Seeded:
    """Fill a fresh data directory with `messages` messages in one inbox, `per_thread` to a thread."""
    began = time.perf_counter()
    data_dir = Path(data_dir)
    existing = Seeded.load(data_dir)
    if existing is not None and existing.messages == messages and existing.layout == LAYOUT:
        return existing
    cached = data_dir.resolve().is_relative_to(CACHE_DIR.resolve())
    if existing is not None and existing.layout != LAYOUT and cached:
        shutil.rmtree(data_dir)  # a cached mailbox of an older layout: seed it again
    if (data_dir / "commune.db").exists():
        raise SystemExit(f"{data_dir} already holds a database of another size; use an empty directory")
    services = Services(Settings(data_dir=data_dir))
    try:
        services.bootstrap()
        org = services.orgs.get_or_create_org("bench")
        key, _ = services.keys.create(org["id"], ["read", "write"], "bench")
        domain = services.domains.shared_domain()
        assert domain is not None
        inbox = services.domains.create_inbox(org["id"], domain, "bench", "Bench inbox", None)
    finally:
        services.close()
    threads = max(1, messages // per_thread)
    conn = sqlite3.connect(str(data_dir / "commune.db"), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    try:
        _write_rows(conn, org["id"], inbox, messages, threads, seed_value)
    finally:
        conn.close()
    # Thread t's newest message is number t + (per_thread - 1) * threads, so t = 0 is the oldest thread.
    info = Seeded(
        data_dir=str(data_dir), messages=messages, threads=threads, key=key, org_id=org["id"],
        inbox_id=inbox["id"], inbox_address=inbox["address"], domain_id=inbox["domain_id"],
        first_thread_id=_thread_id(threads - 1), middle_thread_id=_thread_id(threads // 2),
        last_thread_id=_thread_id(0), seconds=round(time.perf_counter() - began, 2), layout=LAYOUT,
    )
    (data_dir / INFO_FILE).write_text(json.dumps(asdict(info), indent=2))
    return info


def _write_rows(conn: sqlite3.Connection, org_id: str, inbox: dict, messages: int, threads: int,
                seed_value: int) -> None:
    rng = random.Random(seed_value)
    bodies = _bodies(4096, rng)
    rare_every = max(1, messages // RARE_COUNT)
    extra = json.dumps({"inbox_address": inbox["address"]})
    inbox_id, domain_id = inbox["id"], inbox["domain_id"]
    conn.execute("DROP TRIGGER messages_fts_insert")
    for trigger in STATE_TRIGGERS:
        conn.execute("DROP TRIGGER " + trigger.split()[2])
    for start in range(0, messages, BATCH):
        rows = []
        thread_rows: dict[int, tuple] = {}
        for number in range(start, min(messages, start + BATCH)):
            t = number % threads
            sender = f"sender{number % 997}@example.org"
            body = bodies[number % len(bodies)]
            if number % 10:
                body = f"{COMMON_WORD} {body}"
            # One past the middle: the middle message's thread is one in fifty, all of them in the trash.
            if number % rare_every == rare_every // 2 + 1:
                body = f"{body} {RARE_WORD}"
            subject = f"Bench thread {t}"
            at = _stamp(number)
            participants = json.dumps([{"role": "sender", "identity": sender},
                                       {"role": "to", "identity": inbox["address"]}])
            rows.append((f"msg_{number:032x}", org_id, _thread_id(t), inbox_id, domain_id, "inbound", sender,
                         participants, subject, body, f"<{number}@bench.example.org>", extra, at,
                         labels_of(number, t)))
            known = thread_rows.get(t)
            count = known[5] + 1 if known else 1
            thread_rows[t] = (subject, known[1] if known else at, at, sender, body[:120], count)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (id, org_id, thread_id, inbox_id, domain_id, direction, sender, participants,"
            " subject, text_body, smtp_message_id, extra, created_at, labels) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO threads (id, org_id, inbox_id, domain_id, subject, first_message_at, last_message_at,"
            " message_count, snippet, last_direction, last_sender, unread_count)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'inbound', ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET last_message_at = excluded.last_message_at,"
            " message_count = message_count + excluded.message_count, snippet = excluded.snippet,"
            " last_sender = excluded.last_sender, unread_count = unread_count + excluded.unread_count",
            [(_thread_id(t), org_id, inbox_id, domain_id, subject, first, last, count, snippet, sender, count)
             for t, (subject, first, last, sender, snippet, count) in thread_rows.items()],
        )
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    conn.execute(FTS_TRIGGER)
    for statement in [*statements(MAIL_STATE_FILL), *statements(INBOX_COUNTERS_FILL), *STATE_TRIGGERS]:
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed a Commune data directory with many messages, fast.")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--per-thread", type=int, default=4)
    args = parser.parse_args(argv)
    info = seed(args.data_dir, args.messages, args.per_thread)
    print(f"seeded {info.messages} messages in {info.threads} threads in {info.seconds:.1f} s")
    print(f"inbox {info.inbox_address} ({info.inbox_id}); API key on the last line")
    print(info.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
