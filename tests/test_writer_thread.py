"""SQLite's writer thread (`Database.write`, what the group commit runs in): its own connection, rows
visible to the shared connection only once committed, `after_commit` work only after the commit and
never after a rollback, and the shared connection's writers taking turns with it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from backend.store.database import Database, after_commit


@pytest.fixture
def database(tmp_path: Path):
    db = Database(tmp_path / "commune.db")
    db.execute("CREATE TABLE notes (body TEXT NOT NULL)")
    yield db
    db.close()


def count(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0]


def test_the_writer_commits_on_its_own_connection_and_wakes_after_the_commit(database: Database) -> None:
    seen: dict[str, object] = {}

    def write() -> None:
        seen["thread"] = threading.current_thread().name
        with database.transaction() as conn:
            seen["own connection"] = conn is not database.conn
            conn.execute("INSERT INTO notes (body) VALUES ('one')")
            seen["inside, writer"] = database.one("SELECT COUNT(*) FROM notes")[0]
            seen["inside, shared"] = count(database.conn)  # a reader elsewhere: not committed yet
            after_commit(conn, lambda: seen.setdefault("woken, shared", count(database.conn)))
        seen["after, shared"] = count(database.conn)

    asyncio.run(database.write(write))
    assert seen == {"thread": seen["thread"], "own connection": True, "inside, writer": 1, "inside, shared": 0,
                    "woken, shared": 1, "after, shared": 1}
    assert str(seen["thread"]).startswith("commune-writer")


def test_a_rolled_back_write_keeps_nothing_and_wakes_nobody(database: Database) -> None:
    woken: list[str] = []

    def fail() -> None:
        with database.transaction() as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('lost')")
            after_commit(conn, lambda: woken.append("lost"))
            raise RuntimeError("refused")

    def succeed() -> None:
        with database.transaction() as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('kept')")
            after_commit(conn, lambda: woken.append("kept"))

    async def both() -> None:
        with pytest.raises(RuntimeError):
            await database.write(fail)
        await database.write(succeed)

    asyncio.run(both())
    assert woken == ["kept"]
    assert [row[0] for row in database.query("SELECT body FROM notes")] == ["kept"]


def test_the_shared_connection_waits_for_the_writers_transaction(database: Database) -> None:
    """A write on the shared connection while the writer thread is inside its transaction runs after it
    (never SQLITE_BUSY, never interleaved)."""
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow_write() -> None:
        with database.transaction() as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('writer')")
            inside.set()
            release.wait(10)
            order.append("writer committing")

    async def scenario() -> None:
        writing = asyncio.ensure_future(database.write(slow_write))
        await asyncio.to_thread(inside.wait, 10)
        threading.Timer(0.2, release.set).start()
        with database.transaction() as conn:  # blocks until the writer's transaction is done
            order.append("shared writing")
            conn.execute("INSERT INTO notes (body) VALUES ('shared')")
        await writing

    asyncio.run(scenario())
    assert order == ["writer committing", "shared writing"]
    assert [row[0] for row in database.query("SELECT body FROM notes ORDER BY rowid")] == ["writer", "shared"]
