"""The PostgreSQL engine itself: the same schema as SQLite's, translated SQL, rows, and `migrate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from backend.store.database import Database
from backend.store.pg_migrations import PG_MIGRATIONS
from backend.store.postgres import PostgresDatabase, translate

ROOT = Path(__file__).resolve().parent.parent
PG_ONLY_TABLES = {"schema_migrations", "blobs"}
"""Tables only PostgreSQL has: the migration record, and the blobs SQLite keeps as files."""


def sqlite_schema(tmp_path: Path) -> tuple[dict[str, set[str]], set[str]]:
    database = Database(tmp_path / "commune.db")
    try:
        tables = {}
        for (name,) in database.query("SELECT name FROM sqlite_master WHERE type = 'table'"
                                      " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'messages_fts%'"
                                      " AND name NOT LIKE 'messages_trigram%'"):
            tables[name] = {row["name"] for row in database.query(f"PRAGMA table_info({name})")}
        indexes = {row[0] for row in database.query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        return tables, indexes
    finally:
        database.close()


def postgres_schema(url: str) -> tuple[dict[str, set[str]], set[str]]:
    with psycopg.connect(url) as conn:
        tables: dict[str, set[str]] = {}
        for table, column in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"):
            tables.setdefault(table, set()).add(column)
        indexes = {row[0] for row in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    return tables, indexes


def test_both_engines_have_the_same_tables_and_columns(tmp_path, postgres_cluster) -> None:
    """A SQLite migration that adds a table or column needs its PostgreSQL twin in pg_migrations."""
    url = postgres_cluster.new_database()
    PostgresDatabase(url).close()
    lite_tables, lite_indexes = sqlite_schema(tmp_path)
    pg_tables, pg_indexes = postgres_schema(url)
    pg_tables = {name: columns - {"rowid"} for name, columns in pg_tables.items() if name not in PG_ONLY_TABLES}
    assert pg_tables == lite_tables
    # Every index SQLite's lists and lookups rely on exists under the same name.
    assert lite_indexes <= pg_indexes


def test_statements_are_translated_once_for_postgresql() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b LIKE 'x%' AND +org_id = ?") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%' AND org_id = %s", False)
    assert translate("UPDATE t SET a = :at WHERE b IS NOT ? AND c IS ?")[0] == (
        "UPDATE t SET a = %(at)s WHERE b IS DISTINCT FROM %s AND c IS NOT DISTINCT FROM %s")
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?)")[0] == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING")
    assert translate("INSERT OR REPLACE INTO idempotency_keys (org_id, key, response) VALUES (?, ?, ?)")[0] == (
        "INSERT INTO idempotency_keys (org_id, key, response) VALUES (%s, %s, %s)"
        " ON CONFLICT (org_id, key) DO UPDATE SET response = excluded.response")
    assert translate("INSERT INTO messages (id) VALUES (?)") == (
        "INSERT INTO messages (id) VALUES (%s) RETURNING seq", True)
    assert translate("SELECT 1 FROM a CROSS JOIN b ON b.x = a.x WHERE '?' = ?")[0] == (
        "SELECT 1 FROM a JOIN b ON b.x = a.x WHERE '?' = %s")


def test_rows_read_like_sqlite_rows_and_values_keep_their_types(postgres_cluster) -> None:
    database = PostgresDatabase(postgres_cluster.new_database())
    try:
        with database.transaction() as conn:
            conn.execute("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)", ("o1", "Zoë", "2025-01-01"))
            # A read on the same thread inside the transaction sees its writes.
            assert database.one("SELECT name FROM orgs WHERE id = ?", ("o1",))["name"] == "Zoë"
        row = database.one("SELECT id, name, 2 AS n, SUM(rowid) AS total, TRUE AS flag, json_build_object('a', 1)"
                           " AS doc FROM orgs GROUP BY id, name")
        assert row[0] == "o1" and row["name"] == "Zoë" and row.keys() == ["id", "name", "n", "total", "flag", "doc"]
        assert dict(row)["n"] == 2 and type(row["total"]) is int and row["doc"] == '{"a" : 1}'
        identifier, name, *_ = row
        assert (identifier, name) == ("o1", "Zoë")
        with pytest.raises(RuntimeError), database.transaction() as conn:
            conn.execute("UPDATE orgs SET name = ? WHERE id = ?", ("gone", "o1"))
            raise RuntimeError
        assert database.one("SELECT name FROM orgs")[0] == "Zoë"  # rolled back
        assert database.one("SELECT json_extract(?, '$.a.b'), instr('abc', 'c')", ('{"a": {"b": "x"}}',)) == (
            "x", 3)
        assert [tuple(r) for r in database.query("SELECT key, value FROM json_each(?)", ('["x", {"k": 1}]',))] == [
            ("0", "x"), ("1", '{"k": 1}')]
    finally:
        database.close()


def _migrate(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "backend", "migrate", "--database", url], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_migrators_at_once_run_each_migration_once(postgres_cluster) -> None:
    url = postgres_cluster.new_empty_database()
    first, second = _migrate(url), _migrate(url)
    outputs = [process.communicate(timeout=60) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    applied = sorted(int(out.split()[0]) for out, _ in outputs)
    assert applied == [0, len(PG_MIGRATIONS)]
    with psycopg.connect(url) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == sorted(name for name, _ in PG_MIGRATIONS)
    again = _migrate(url)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and out.startswith("0 migration(s)"), err


def test_migrate_refuses_an_unreachable_database(tmp_path) -> None:
    process = subprocess.run([sys.executable, "-m", "backend", "migrate", "--database",
                              f"postgresql://nobody@/none?host={tmp_path}"], check=False, cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert process.returncode == 1 and "cannot reach the database" in process.stderr
