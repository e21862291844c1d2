"""The install being copied: its SQLite file opened read-only, its blob files, its server secret."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..config import Settings
from ..store.blobs import HEX, ORG_RE
from ..store.migrations import MIGRATIONS


class SourceRefused(Exception):
    """The data directory cannot be copied as it is; the message says why and what to do."""


@dataclass(frozen=True)
class SourceTable:
    """A table of the install: its columns, and the columns that order it for keyset reads."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


@dataclass(frozen=True)
class RowBatch:
    """Rows read in key order, and the key of the last one (where the next batch starts)."""

    rows: list[tuple]
    last_key: list


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SourceInstall:
    """A stopped install's data directory, read and never written."""

    def __init__(self, data_dir: Path) -> None:
        self.paths = Settings(data_dir=data_dir)
        self.data_dir = data_dir
        if not self.paths.db_path.is_file():
            raise SourceRefused(f"no Commune data in {data_dir} (no {self.paths.db_path.name});"
                                " check --from")
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open the database read-only; refuse a schema older or newer than this version's."""
        uri = f"file:{quote(str(self.paths.db_path.resolve()))}?mode=ro"
        try:
            self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise SourceRefused(f"cannot read {self.paths.db_path}: {exc}") from exc
        if version < len(MIGRATIONS):
            raise SourceRefused(f"the install in {self.data_dir} has an older schema; bring it up to date"
                                f" first: commune-server migrate --data-dir {self.data_dir}")
        if version > len(MIGRATIONS):
            raise SourceRefused(f"the install in {self.data_dir} was made by a newer Commune;"
                                " copy it with that version")
        blobs = self.paths.blobs_dir
        if blobs.is_dir() and any(len(d.name) == 2 and HEX.issuperset(d.name) for d in blobs.iterdir()):
            raise SourceRefused(f"the blobs in {blobs} are in the older shared layout; start the server on"
                                " it once (it moves them) and stop it again before copying")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # tables ----------------------------------------------------------------------------------------
    def tables(self) -> list[SourceTable]:
        """The install's own tables in creation order; FTS5 tables and their shadow tables left out."""
        assert self.conn is not None
        listed = {row[1]: row for row in self.conn.execute("PRAGMA main.table_list")}
        found = []
        for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"):
            entry = listed.get(name)
            if entry is None or entry[2] != "table" or name.startswith("sqlite_"):
                continue  # virtual (FTS5) and shadow tables, SQLite's own
            info = self.conn.execute(f"PRAGMA table_info({quote_name(name)})").fetchall()
            columns = tuple(column[1] for column in info)
            primary = tuple(column[1] for column in sorted(info, key=lambda c: c[5]) if column[5])
            found.append(SourceTable(name, columns, primary if entry[4] else ("rowid",)))
        return found

    def count(self, table: str) -> int:
        assert self.conn is not None
        return self.conn.execute(f"SELECT count(*) FROM {quote_name(table)}").fetchone()[0]

    def batches(self, table: str, select: tuple[str, ...], key: tuple[str, ...], after: list | None,
                max_rows: int, max_bytes: int) -> Iterator[RowBatch]:
        """The `select` columns of the rows whose `key` comes after `after`, in key order, in batches of
        at most `max_rows` rows or about `max_bytes` of text and bytes."""
        assert self.conn is not None
        keys = ", ".join(quote_name(k) for k in key)
        names = ", ".join(quote_name(c) for c in (*select, *key))
        where = f"WHERE ({keys}) > ({', '.join('?' * len(key))})" if after else ""
        cursor = self.conn.execute(f"SELECT {names} FROM {quote_name(table)} {where} ORDER BY {keys}",
                                   after or ())
        width = len(select)
        rows: list[tuple] = []
        size = 0
        row: tuple = ()
        for row in cursor:
            rows.append(row[:width])
            size += sum(len(value) for value in row if isinstance(value, str | bytes))
            if len(rows) >= max_rows or size >= max_bytes:
                yield RowBatch(rows, list(row[width:]))
                rows, size = [], 0
        if rows:
            yield RowBatch(rows, list(row[width:]))

    def state_names(self) -> set[str]:
        """The names recorded in the install's `server_state` table (none when it has no such table)."""
        assert self.conn is not None
        try:
            return {row[0] for row in self.conn.execute("SELECT name FROM server_state")}
        except sqlite3.OperationalError:
            return set()

    # blobs -------------------------------------------------------------------------------------------
    def blob_files(self, after: tuple[str, str] | None = None) -> Iterator[tuple[str, str, Path]]:
        """(org_id, sha256, path) of every blob file, ordered by (org_id, sha256), after `after`."""
        root = self.paths.blobs_dir
        for org_id in _sorted_dirs(root):
            if not ORG_RE.match(org_id) or (after and org_id < after[0]):
                continue
            for prefix in _sorted_dirs(root / org_id):
                if len(prefix) != 2 or not HEX.issuperset(prefix):
                    continue
                if after and org_id == after[0] and prefix < after[1][:2]:
                    continue
                folder = root / org_id / prefix
                for name in sorted(os.listdir(folder)):
                    digest = prefix + name
                    if len(digest) != 64 or not HEX.issuperset(name):
                        continue  # a temporary file a crash left behind
                    if after and (org_id, digest) <= after:
                        continue
                    yield org_id, digest, folder / name

    def blob_summary(self) -> tuple[int, int]:
        """How many blob files there are and their total bytes."""
        count = size = 0
        for _org, _digest, path in self.blob_files():
            count += 1
            size += path.stat().st_size
        return count, size

    # identity ----------------------------------------------------------------------------------------
    def secret_hex(self) -> str | None:
        """The server secret (hex) that signs this install's links and tokens, if it has one."""
        try:
            return self.paths.secret_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def admin_key_exists(self) -> bool:
        try:
            return bool(self.paths.admin_key_path.read_text().strip())
        except FileNotFoundError:
            return False

    def identity(self) -> str:
        """What tells this install from any other: a digest of its secret (or of its file's path)."""
        secret = self.secret_hex() or str(self.paths.db_path.resolve())
        return hashlib.sha256(b"commune copy source\0" + secret.encode()).hexdigest()

    def fingerprint(self) -> str:
        """Size and modification time of the database and its WAL: a copy resumed after a server ran
        on the install would miss what changed, so a changed fingerprint refuses to resume."""
        parts = {}
        for path in (self.paths.db_path, self.paths.db_path.with_name(self.paths.db_path.name + "-wal")):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            parts[path.name] = [stat.st_size, stat.st_mtime_ns]
        return json.dumps(parts, sort_keys=True)


def _sorted_dirs(path: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
