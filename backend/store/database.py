"""Opening the SQLite database: WAL, pragmas, migrations, and explicit transactions."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import ctypes.util
import functools
import os
import sqlite3
import stat
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import sqlite_utils

from . import dialect_sqlite
from .errors import StorageFull, is_storage_full
from .migrations import migrate

if TYPE_CHECKING:
    from ..config import Settings
    from .postgres import PostgresDatabase

P = ParamSpec("P")
T = TypeVar("T")
WATCH_LOOP_ENV = "COMMUNE_DEBUG_LOOP_DB"
"""Set (to anything but empty) to record every statement run on an event loop outside `Database.run`."""
_inside_run: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_database_run", default=False)


def make_private(path: Path) -> None:
    """Create the database file 0600 (or take group/other access away from an existing one) before SQLite
    opens it: SQLite creates the -wal and -shm files with the database file's mode, whatever the umask."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            companion = path.with_name(path.name + suffix)
            if stat.S_IMODE(companion.stat().st_mode) & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            pass


class WriterConnection(sqlite3.Connection):
    """The writer thread's connection: what `after_commit` asks for waits until its transaction commits
    (readers on the other connection see the rows only then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed: list[Callable[[], object]] = []

    def after_commit(self, fn: Callable[[], object]) -> None:
        """Call `fn` once this transaction has committed (never if it rolls back)."""
        self.committed.append(fn)


def connect(path: Path | str, factory: type[sqlite3.Connection] = sqlite3.Connection) -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are opened explicitly with `transaction()`."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30,
                           factory=factory)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives process crashes; the paths that acknowledge mail (SMTP 250, send 200)
    # add `fsync_wal()` off the event loop, which makes their commits survive a power loss too.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-16000")
    conn.execute("PRAGMA mmap_size=268435456")
    # Unicode case folding for `store.search` (SQLite's own lower() folds ASCII letters only).
    conn.create_function("casefold", 1, _casefold, deterministic=True)
    return conn


def _casefold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


@functools.cache
def _libc_syncfs():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    syncfs = getattr(ctypes.CDLL(name, use_errno=True), "syncfs", None)
    if syncfs is not None:
        syncfs.argtypes = [ctypes.c_int]
        syncfs.restype = ctypes.c_int
    return syncfs


class Database:
    """The database handle every aggregate store receives; one writer at a time through `transaction()`.

    backend/store/postgres.py's `PostgresDatabase` has the same interface; `open_database` picks one.
    """

    engine = "sqlite"
    dialect = dialect_sqlite

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        make_private(self.path)
        self.conn = connect(self.path)
        self.db = sqlite_utils.Database(self.conn)
        migrate(self.conn)
        self._lock = threading.RLock()
        self._depth = 0
        self._local = threading.local()
        """`conn` here is the writer connection, in the writer thread only."""
        self._writer: ThreadPoolExecutor | None = None
        self.loop_statements: list[str] | None = None
        """With `COMMUNE_DEBUG_LOOP_DB` set: each statement run on an event loop outside `run`, with where."""
        if os.environ.get(WATCH_LOOP_ENV):
            self.loop_statements = []
            self.run = self._run_watched  # type: ignore[method-assign]
            self.conn.set_trace_callback(self._watch)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)`, awaitable: the one way request and worker code reaches the database.

        On SQLite a direct call (an indexed read costs microseconds; a thread hop would cost more); the
        PostgreSQL engine runs `fn` on a worker thread so no network I/O happens on the event loop.
        """
        return fn(*args, **kwargs)

    async def write(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in the writer thread, whose `transaction()` and reads use its own connection.

        For the group commit: SQLite releases the GIL while it inserts, indexes and commits, so that
        work runs on another core beside the event loop, and readers on the loop's connection (WAL) see
        the rows once the commit is done. Writers still take turns: the loop's `transaction()` waits
        while the writer thread holds one.
        """
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, "commune-writer")
        call = functools.partial(self._in_writer, functools.partial(fn, *args, **kwargs))
        return await asyncio.get_running_loop().run_in_executor(self._writer, call)

    def _in_writer(self, call: Callable[[], T]) -> T:
        # Opened on first use, in the thread (a failure here fails this call only; the next one retries).
        if getattr(self._local, "conn", None) is None:
            conn = connect(self.path, WriterConnection)
            if self.loop_statements is not None:
                conn.set_trace_callback(self._watch)
            self._local.conn = conn
        return call()

    def _here(self) -> sqlite3.Connection:
        """This thread's connection: the writer's in the writer thread, else the shared one."""
        return getattr(self._local, "conn", None) or self.conn

    async def _run_watched(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        token = _inside_run.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _inside_run.reset(token)

    def _watch(self, statement: str) -> None:
        if _inside_run.get():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread, or no loop at all (start-up, the CLI)
            return
        assert self.loop_statements is not None
        where = "".join(traceback.format_stack(limit=14)[:-1])
        self.loop_statements.append(f"{statement}\n{where}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT on this thread's connection (the writer thread's own, else the shared
        one); nested calls join the outer one, and one transaction runs at a time across both.

        A write refused for lack of space (SQLITE_FULL) rolls back and raises `StorageFull`.
        """
        conn = self._here()
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            committed = getattr(conn, "committed", None)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite may have rolled back already (a full disk does), and a failed COMMIT may not have.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_storage_full(exc):
                    raise StorageFull from exc
                raise
            finally:
                self._depth = 0
                after = list(committed or ())
                if committed:
                    committed.clear()
        for fn in after:
            fn()

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[sqlite3.Row]:
        return self._here().execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Row | None:
        return self._here().execute(sql, params).fetchone()

    def execute(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Cursor:
        return self._here().execute(sql, params)

    @contextmanager
    def stream(self, sql: str, params: tuple | list = ()) -> Iterator[Iterable[tuple]]:
        """Rows as plain tuples, read from the database as they are iterated: a reader that stops early
        (a search that has its page) leaves the rest unread."""
        cursor = self._here().cursor()
        cursor.row_factory = None
        try:
            yield cursor.execute(sql, params)
        finally:
            cursor.close()

    def tuples(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Rows as plain tuples (cheaper than Rows where a page is read by position)."""
        cursor = self._here().cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, params).fetchall()
        finally:
            cursor.close()

    def dicts(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        """Rows as plain dicts: a page maps every column by name, and a dict lookup costs a third of a Row's."""
        cursor = self._here().cursor()
        cursor.row_factory = None
        try:
            cursor.execute(sql, params)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def fsync_wal(self) -> None:
        """Flush committed WAL frames to the disk (blocking: call it in a worker thread).

        Same guarantee as `synchronous=FULL` for everything committed so far, but one fsync covers a
        whole group of commits and the event loop never waits on the disk.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed away: the data is in the main file, synced by the checkpoint
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_filesystem(self) -> None:
        """Flush everything written to the data directory's filesystem (blobs and WAL) in one call.

        Blocking: call it in a worker thread. One `syncfs` per SMTP commit group replaces an fsync per
        blob file plus one for the WAL; where `syncfs` is missing it falls back to `fsync_wal` + `os.sync`.
        """
        syncfs = _libc_syncfs()
        if syncfs is None:
            self.fsync_wal()
            os.sync()
            return
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                raise OSError(ctypes.get_errno(), "syncfs failed")
        finally:
            os.close(fd)

    def new_connection(self) -> sqlite3.Connection:
        """A separate connection for work in another thread (bulk writes, MIME ingest)."""
        conn = connect(self.path)
        if self.loop_statements is not None:
            conn.set_trace_callback(self._watch)
        return conn

    def close(self) -> None:
        if self._writer is not None:
            self._writer.submit(self._close_writer).result()
            self._writer.shutdown()
            self._writer = None
        self.conn.close()

    def _close_writer(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def after_commit(conn: Any, fn: Callable[[], object]) -> None:
    """Call `fn` once the transaction `conn` belongs to has committed (a worker woken by it then finds
    the rows). On SQLite's shared connection at once: every reader on it sees its rows already."""
    hook = getattr(conn, "after_commit", None)
    if hook is None:
        fn()
    else:
        hook(fn)


def open_database(settings: Settings) -> Database | PostgresDatabase:
    """The engine `settings.database_url` names: PostgreSQL for a `postgresql://` URL, else the SQLite
    file in the data directory."""
    if settings.database_url:
        from .postgres import PostgresDatabase

        return PostgresDatabase(settings.database_url)
    return Database(settings.db_path)
