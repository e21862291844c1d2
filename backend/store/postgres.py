"""The PostgreSQL engine: `PostgresDatabase`, the same interface as the SQLite `Database`.

The store's SQL is written once, for SQLite, with `?` (or `:name`) placeholders. Each statement is
translated once (cached) for PostgreSQL: placeholders become psycopg's, a literal `%` is doubled,
`INSERT OR IGNORE` / `INSERT OR REPLACE` become `ON CONFLICT` clauses, SQLite's unary `+column` (a
planner hint) is dropped, and an insert into a table whose new key the caller reads (`lastrowid`)
gets a `RETURNING` clause. Functions SQLite has and PostgreSQL lacks (`instr`, `json_each`,
`json_extract`, two-argument `max`/`min`, …) are created by backend/store/pg_migrations.py; SQL that
really differs lives in backend/store/dialect_postgres.py.

Connections come from a psycopg pool. `transaction()` holds one connection for the calling thread
(nested calls join it, and reads made on that thread meanwhile see its writes); one write transaction
at a time per process, as with SQLite, so read-then-write sequences in the stores stay serial. Rows
behave like `sqlite3.Row`: by position, by name, `keys()`, `dict(row)`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from . import dialect_postgres
from .errors import StorageFull
from .pg_migrations import migrate

T = TypeVar("T")

POOL_MIN = 2
POOL_MAX = 16
STREAM_BATCH = 200
"""Rows a streamed read (`PostgresDatabase.stream`) fetches per round trip."""

# Tables whose new key an insert hands back as `cursor.lastrowid` (SQLite's INTEGER PRIMARY KEY).
RETURNED_KEYS = {"messages": "seq", "dmarc_reports": "seq", "outbox": "seq"}
# Primary keys of the tables written with `INSERT OR REPLACE`.
REPLACED_KEYS = {"idempotency_keys": ("org_id", "key")}

_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")
_PLACEHOLDER = re.compile(r"%|\?|(?<![:\w]):([A-Za-z_]\w*)|(^|[\s(,=])\+(?=[A-Za-z_])")
_IS_PARAM = re.compile(r"\bIS\s+(NOT\s+)?(?=\?|:[A-Za-z_])", re.IGNORECASE)
_CROSS_JOIN_ON = re.compile(r"\bCROSS\s+JOIN(?=\s+\w+(?:\s+(?:AS\s+)?\w+)?\s+ON\b)", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+(IGNORE|REPLACE)\s+)?INTO\s+(\w+)\s*(\(([^)]*)\))?", re.IGNORECASE)


def _placeholders(match: re.Match[str]) -> str:
    text = match.group(0)
    if text == "%":
        return "%%"
    if text == "?":
        return "%s"
    if match.group(1):
        return f"%({match.group(1)})s"
    return match.group(2)  # a unary plus: keep what preceded it, drop the sign


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, bool]:
    """SQLite-flavoured store SQL as PostgreSQL SQL for psycopg, and whether it returns the new key."""
    parts = _QUOTED.split(sql)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part.replace("%", "%%"))
        else:
            part = _IS_PARAM.sub(lambda m: "IS DISTINCT FROM " if m.group(1) else "IS NOT DISTINCT FROM ", part)
            part = _CROSS_JOIN_ON.sub("JOIN", part)
            out.append(_PLACEHOLDER.sub(_placeholders, part))
    text = "".join(out).rstrip().rstrip(";")
    returns_key = False
    insert = _INSERT.match(text)
    if insert is not None:
        conflict, table, columns = (insert.group(1) or "").upper(), insert.group(2).lower(), insert.group(4)
        if conflict:
            text = re.sub(r"^\s*INSERT\s+OR\s+\w+\s+INTO", "INSERT INTO", text, count=1, flags=re.IGNORECASE)
        if conflict == "IGNORE":
            text += " ON CONFLICT DO NOTHING"
        elif conflict == "REPLACE":
            keys = REPLACED_KEYS[table]
            names = [c.strip() for c in (columns or "").split(",") if c.strip() and c.strip() not in keys]
            text += (f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                     + ", ".join(f"{n} = excluded.{n}" for n in names))
        if table in RETURNED_KEYS and " RETURNING " not in text.upper():
            text += f" RETURNING {RETURNED_KEYS[table]}"
            returns_key = True
    return text, returns_key


# -- rows ------------------------------------------------------------------------------------------
class Row(tuple):
    """A result row like `sqlite3.Row`: a tuple, also read by column name; `keys()`, `dict(row)`."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=2048)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Row]:
    description = cursor.description
    if description is None:
        return Row
    return _row_class(tuple(column.name for column in description))


# -- value types: the same Python values as SQLite's -------------------------------------------------
class _NumericLoader(Loader):
    """`numeric` (what SUM of integers gives) as int when whole, else float, as SQLite returns them."""

    def load(self, data: Any) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class _BoolDumper(Dumper):
    """Python booleans as integers 0/1 (every flag column is an integer, as in SQLite)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.adapters.register_loader("numeric", _NumericLoader)
    conn.adapters.register_dumper(bool, _BoolDumper)


# -- cursors and connections -----------------------------------------------------------------------
class Cursor:
    """What `execute` returns: fetchone/fetchall/iteration/rowcount/lastrowid/description, rows read."""

    __slots__ = ("_pos", "_rows", "description", "lastrowid", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None, description: Any) -> None:
        self._rows = rows
        self._pos = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.description = description

    def fetchone(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[Any]:
        rows, self._pos = self._rows[self._pos:], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._rows = []


def _without_nul(params: Any) -> Any:
    """`params` with NUL characters (which PostgreSQL text cannot hold, SQLite can) as U+FFFD: an id
    holding one is found nowhere, a message body keeps every other character."""
    if isinstance(params, str):
        return params.replace("\x00", "\ufffd")
    if isinstance(params, dict):
        return {key: _without_nul(value) for key, value in params.items()}
    if isinstance(params, (list, tuple)):
        return [_without_nul(value) for value in params]
    return params


def _execute(cur: psycopg.Cursor[Any], text: str, params: Any, many: bool = False) -> None:
    run = cur.executemany if many else cur.execute
    try:
        run(text, params)
    except psycopg.errors.DiskFull as exc:
        raise StorageFull from exc
    except psycopg.DataError as exc:
        if "NUL" not in str(exc):  # raised before anything was sent: the transaction is intact
            raise
        run(text, _without_nul(params))


def _run(raw: psycopg.Connection[Any], sql: str, params: Any, row_factory: Any = _row_factory) -> Cursor:
    text, returns_key = translate(sql)
    with raw.cursor(row_factory=row_factory) as cur:
        _execute(cur, text, params if params is not None else ())
        rows = cur.fetchall() if cur.description is not None else []
        if returns_key:
            return Cursor([], cur.rowcount, rows[-1][0] if rows else None, None)
        return Cursor(rows, cur.rowcount, None, cur.description)


class Connection:
    """A pooled connection as the stores use sqlite3's: `execute`, `executemany`, and `after_commit`."""

    __slots__ = ("committed", "raw")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.committed: list[Callable[[], object]] = []

    def after_commit(self, fn: Callable[[], object]) -> None:
        """Call `fn` once this transaction has committed (never if it rolls back)."""
        self.committed.append(fn)

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        return _run(self.raw, sql, params)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def executemany(self, sql: str, seq_of_params: Any) -> Cursor:
        text, _ = translate(sql)
        params = list(seq_of_params)
        if not params:
            return Cursor([], 0, None, None)
        with self.raw.cursor() as cur:
            _execute(cur, text, params, many=True)
            return Cursor([], cur.rowcount, None, None)


class PostgresDatabase:
    """The database handle every aggregate store receives, on PostgreSQL (see the module doc)."""

    engine = "postgresql"
    dialect = dialect_postgres

    def __init__(self, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        self.url = url
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, kwargs={"autocommit": True},
                                   configure=_configure, open=True, name="commune")
        self.pool.wait(timeout=30)
        self._local = threading.local()
        self._lock = threading.RLock()

    # transactions ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN … COMMIT on one pooled connection for this thread; nested calls join the outer one."""
        local = self._local
        current = getattr(local, "conn", None)
        if current is not None:
            yield current
            return
        with self._lock, self.pool.connection() as raw:
            conn = Connection(raw)
            local.conn = conn
            try:
                with raw.transaction():
                    yield conn
            except psycopg.errors.DiskFull as exc:
                raise StorageFull from exc
            finally:
                local.conn = None
        for fn in conn.committed:
            fn()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's transaction connection, else a pooled one in autocommit mode."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current.raw
            return
        with self.pool.connection() as raw:
            yield raw

    # reads and single statements ---------------------------------------------------------------
    def query(self, sql: str, params: Any = ()) -> list[Row]:
        with self._connection() as raw:
            return _run(raw, sql, params).fetchall()

    def one(self, sql: str, params: Any = ()) -> Row | None:
        with self._connection() as raw:
            return _run(raw, sql, params).fetchone()

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        with self._connection() as raw:
            return _run(raw, sql, params)

    @contextmanager
    def stream(self, sql: str, params: Any = ()) -> Iterator[Iterable[tuple]]:
        """Rows as plain tuples, fetched STREAM_BATCH at a time through a server-side cursor as they are
        iterated: a reader that stops early (a search that has its page) leaves the rest unread, and the
        planner picks the plan that yields the first rows soonest (`cursor_tuple_fraction`)."""
        text, _ = translate(sql)
        with self._connection() as raw, raw.transaction():  # a server-side cursor lives in a transaction
            with raw.cursor(name="commune_stream", row_factory=psycopg.rows.tuple_row) as cur:
                cur.itersize = STREAM_BATCH
                _execute(cur, text, params if params is not None else ())
                yield cur

    def tuples(self, sql: str, params: Any = ()) -> list[tuple]:
        with self._connection() as raw:
            return _run(raw, sql, params, row_factory=psycopg.rows.tuple_row).fetchall()

    def dicts(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self._connection() as raw:
            return _run(raw, sql, params, row_factory=psycopg.rows.dict_row).fetchall()

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker thread: no network round trip on the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    write = run
    """The group commit's way in: a worker thread, as `run` (every PostgreSQL transaction has its own connection)."""

    # durability: a PostgreSQL commit is durable when it returns (synchronous_commit=on) -----------
    def fsync_wal(self) -> None:
        pass

    def sync_filesystem(self) -> None:
        pass

    def new_connection(self) -> Connection:
        """A separate connection for work in another thread (close it with `.raw.close()`)."""
        raw = psycopg.connect(self.url, autocommit=True)
        _configure(raw)
        return Connection(raw)

    def close(self) -> None:
        self.pool.close()
