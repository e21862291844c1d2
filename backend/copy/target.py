"""The PostgreSQL database a copy goes into: its schema, the plan per table, batches with their progress."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

from ..coordination import ADMIN_KEY, SECRET
from ..store.pg_migrations import MIGRATION_LOCK, migrate
from ..util import now_iso
from .source import SourceTable, quote_name

COPY_LOCK = MIGRATION_LOCK + 1
"""pg_advisory_lock key a copy holds: one copy into a database at a time."""
BLOB_ITEM = "blob files"
"""The progress record of the blob files (table names never contain a space)."""
INDEX_BUILD_MEMORY = "256MB"
"""maintenance_work_mem while the deferred indexes are built."""
SERVER_STATE = "server_state"

# Where a copy records what it copied: which install (`source`, a digest of its secret) and, per table,
# the key of the last row committed. Kept after the copy: running it again verifies the counts again.
PROGRESS_TABLES = """
CREATE TABLE IF NOT EXISTS copy_source (
    source text PRIMARY KEY,
    fingerprint text NOT NULL,
    started_at text NOT NULL,
    finished_at text
);
CREATE TABLE IF NOT EXISTS copy_progress (
    item text PRIMARY KEY,
    last_key text,
    copied bigint NOT NULL DEFAULT 0,
    nbytes bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    deferred_indexes text
);
"""


class CopyRefused(Exception):
    """The target cannot take this copy; the message says why and what to do."""


@dataclass(frozen=True)
class TablePlan:
    """How one table is copied: source columns `select` into target `columns` (same order), read in
    `key` order; `identities` are the target's identity columns to move past the copied values."""

    name: str
    columns: tuple[str, ...]
    select: tuple[str, ...]
    key: tuple[str, ...]
    identities: tuple[str, ...] = ()
    triggers: bool = False


BLOB_PLAN = TablePlan("blobs", ("org_id", "sha256", "content"), (), ())


def plan_tables(tables: list[SourceTable], target: TargetDatabase) -> list[TablePlan]:
    """A plan for every source table, parents before the tables whose foreign keys name them; refuses
    when the target's schema lacks a table or column the install has."""
    columns = target.columns()
    triggered = target.triggered_tables()
    plans, missing = [], []
    for table in tables:
        have = columns.get(table.name)
        if have is None:
            missing.append(table.name)
            continue
        absent = [c for c in table.columns if c not in have]
        missing.extend(f"{table.name}.{c}" for c in absent)
        names = list(table.columns)
        if table.key == ("rowid",) and "rowid" in have and "rowid" not in names:
            names.append("rowid")  # SQLite's implicit rowid, an explicit column on PostgreSQL
        identities = tuple(c for c in names if have.get(c))
        plans.append(TablePlan(table.name, tuple(names), tuple(names), table.key, identities,
                               table.name in triggered))
    if missing:
        raise CopyRefused(f"the target's schema lacks {', '.join(missing)}; a Commune of the same version"
                          " must create both")
    return _parents_first(plans, target.foreign_keys())


def _parents_first(plans: list[TablePlan], edges: set[tuple[str, str]]) -> list[TablePlan]:
    names = {plan.name for plan in plans}
    parents = {plan.name: {parent for child, parent in edges
                           if child == plan.name and parent in names and parent != plan.name}
               for plan in plans}
    ordered: list[TablePlan] = []
    placed: set[str] = set()
    waiting = list(plans)
    while waiting:
        ready = next((plan for plan in waiting if parents[plan.name] <= placed), waiting[0])
        ordered.append(ready)
        placed.add(ready.name)
        waiting.remove(ready)
    return ordered


def _without_nul(row: tuple) -> tuple:
    return tuple(value.replace("\x00", "\ufffd") if isinstance(value, str) else value for value in row)


class TargetDatabase:
    """One autocommit connection to the target; each batch commits with its progress record."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        try:
            migrate(self.conn)
            if not self.conn.execute("SELECT pg_try_advisory_lock(%s)", (COPY_LOCK,)).fetchone()[0]:
                raise CopyRefused("another copy into this database is running")
            self.conn.execute(PROGRESS_TABLES)
        except BaseException:
            self.conn.close()
            raise
        self._staged: set[str] = set()

    def close(self) -> None:
        self.conn.close()

    # the schema ------------------------------------------------------------------------------------
    def columns(self) -> dict[str, dict[str, bool]]:
        """Every table's columns, each with whether it is an identity column."""
        found: dict[str, dict[str, bool]] = {}
        for table, column, identity in self.conn.execute(
                "SELECT table_name, column_name, is_identity = 'YES' FROM information_schema.columns"
                " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
            found.setdefault(table, {})[column] = identity
        return found

    def triggered_tables(self) -> set[str]:
        return {row[0] for row in self.conn.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace")}

    def foreign_keys(self) -> set[tuple[str, str]]:
        """(table, the table its foreign key names)."""
        return {(row[0], row[1]) for row in self.conn.execute(
            "SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " JOIN pg_class p ON p.oid = k.confrelid"
            " WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace")}

    # the copy's record ---------------------------------------------------------------------------------
    def claim(self, source: str, fingerprint: str, tables: list[str]) -> dict[str, dict[str, Any]]:
        """Start a copy of `source` into an empty database, or continue the one it holds; the progress
        of every table (and of the blob files) so far."""
        with self.conn.transaction():
            row = self.conn.execute("SELECT source, fingerprint FROM copy_source").fetchone()
            if row is None:
                busy = [t for t in (*tables, BLOB_PLAN.name) if self.conn.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {quote_name(t)})").fetchone()[0]]
                if busy:
                    raise CopyRefused(f"the target database already holds data (in {', '.join(busy[:4])});"
                                      " copy into an empty database, or into an unfinished copy of the"
                                      " same install to finish it")
                self.conn.execute("INSERT INTO copy_source (source, fingerprint, started_at)"
                                  " VALUES (%s, %s, %s)", (source, fingerprint, now_iso()))
            elif row[0] != source:
                raise CopyRefused("the target database holds a copy of another install; copy into an"
                                  " empty database")
            elif row[1] != fingerprint:
                raise CopyRefused("the install changed since the copy into this database began (a server"
                                  " ran on it); copy it into a new, empty database")
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO copy_progress (item) VALUES (%s) ON CONFLICT DO NOTHING",
                                [(t,) for t in (*tables, BLOB_ITEM)])
            return {r[0]: {"last_key": r[1], "copied": r[2], "nbytes": r[3], "done": r[4], "deferred": r[5]}
                    for r in self.conn.execute(
                        "SELECT item, last_key, copied, nbytes, done, deferred_indexes FROM copy_progress")}

    def defer_indexes(self, plan: TablePlan) -> str:
        """Drop the table's non-unique indexes until `finish_table`, recording their definitions in the
        same transaction: building an index once over all rows is about twice as fast as keeping it up
        to date row by row (the search indexes most of all). Unique ones stay: they decide conflicts."""
        with self.conn.transaction():
            found = self.conn.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " WHERE i.indrelid = %s::regclass AND NOT i.indisunique"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                (quote_name(plan.name),)).fetchall()
            for name, _definition in found:
                self.conn.execute(f"DROP INDEX {name}")
            deferred = json.dumps([definition for _name, definition in found])
            self.conn.execute("UPDATE copy_progress SET deferred_indexes = %s WHERE item = %s",
                              (deferred, plan.name))
        return deferred

    def finish(self) -> None:
        self.conn.execute("UPDATE copy_source SET finished_at = coalesce(finished_at, %s)", (now_iso(),))

    # rows --------------------------------------------------------------------------------------------
    def write_rows(self, plan: TablePlan, rows: list[tuple], last_key: str, item: str | None = None,
                   nbytes: int = 0) -> None:
        """Insert one batch (rows already there are skipped) and record its last key, in one transaction,
        with the table's triggers held off: the rows the triggers would derive are copied themselves.

        Text with NUL characters (SQLite holds them, PostgreSQL text cannot) goes in with U+FFFD in
        their place, as the server itself stores such text on PostgreSQL."""
        try:
            self._write_rows(plan, rows, last_key, item or plan.name, nbytes)
        except psycopg.DataError as exc:
            if "NUL" not in str(exc) and "0x00" not in str(exc):
                raise
            self._write_rows(plan, [_without_nul(row) for row in rows], last_key, item or plan.name, nbytes)

    def _write_rows(self, plan: TablePlan, rows: list[tuple], last_key: str, item: str, nbytes: int) -> None:
        table = quote_name(plan.name)
        columns = ", ".join(quote_name(c) for c in plan.columns)
        stage = self._stage(plan, columns)
        overriding = " OVERRIDING SYSTEM VALUE" if plan.identities else ""
        with self.conn.transaction(), self.conn.cursor() as cur:
            if plan.triggers:
                cur.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            with cur.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(f"INSERT INTO {table} ({columns}){overriding} SELECT {columns} FROM {stage}"
                        " ON CONFLICT DO NOTHING")
            if plan.triggers:
                cur.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            cur.execute("UPDATE copy_progress SET last_key = %s, copied = copied + %s, nbytes = nbytes + %s"
                        " WHERE item = %s", (last_key, len(rows), nbytes, item))

    def write_blobs(self, rows: list[tuple], last_key: str, nbytes: int) -> None:
        self.write_rows(BLOB_PLAN, rows, last_key, BLOB_ITEM, nbytes)

    def _stage(self, plan: TablePlan, columns: str) -> str:
        """A temporary table of the plan's columns that COPY fills and each commit empties."""
        stage = quote_name(f"copy_stage_{plan.name}")
        if plan.name not in self._staged:
            self.conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
                              f" SELECT {columns} FROM {quote_name(plan.name)} WITH NO DATA")
            self._staged.add(plan.name)
        return stage

    def finish_table(self, plan: TablePlan) -> None:
        """Build the indexes deferred for the copy, move the identity columns' sequences past the copied
        values, and mark the table copied, in one transaction."""
        with self.conn.transaction():
            row = self.conn.execute("SELECT deferred_indexes FROM copy_progress WHERE item = %s",
                                    (plan.name,)).fetchone()
            if row and row[0]:
                self.conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
                for definition in json.loads(row[0]):
                    self.conn.execute(definition)
                self.conn.execute("UPDATE copy_progress SET deferred_indexes = NULL WHERE item = %s",
                                  (plan.name,))
            for column in plan.identities:
                self.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence(%s, %s), m) FROM"
                    f" (SELECT max({quote_name(column)}) AS m FROM {quote_name(plan.name)}) AS s"
                    " WHERE m IS NOT NULL", (quote_name(plan.name), column))
            self.finish_item(plan.name)

    def finish_blobs(self) -> None:
        self.finish_item(BLOB_ITEM)

    def finish_item(self, item: str) -> None:
        self.conn.execute("UPDATE copy_progress SET done = true WHERE item = %s", (item,))

    def move_server_state(self, secret_hex: str | None, admin_key: bool, recorded: set[str]) -> dict[str, int]:
        """Record the install's secret (a file beside SQLite, a row on a shared database) and that its
        admin key exists, so nodes on the target neither make a new secret nor a second admin key.
        Returns the rows this adds per table (for the verification)."""
        if SERVER_STATE not in self.columns():
            return {}
        rows = []
        if secret_hex and SECRET not in recorded:
            rows.append((SECRET, secret_hex, now_iso()))
        if admin_key and ADMIN_KEY not in recorded:
            rows.append((ADMIN_KEY, "copy", now_iso()))
        if not rows:
            return {}
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {SERVER_STATE} (name, value, created_at) VALUES (%s, %s, %s)"
                            " ON CONFLICT (name) DO NOTHING", rows)
        return {SERVER_STATE: len(rows)}

    # counts ------------------------------------------------------------------------------------------
    def count(self, table: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {quote_name(table)}").fetchone()[0]

    def blob_summary(self) -> tuple[int, int]:
        row = self.conn.execute("SELECT count(*), coalesce(sum(octet_length(content)), 0) FROM blobs").fetchone()
        return int(row[0]), int(row[1])
