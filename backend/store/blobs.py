"""Content-addressed files for attachment and raw-message bytes: `blobs/<org_id>/ab/cdef…` by sha256
(on PostgreSQL: rows of the `blobs` table, `DatabaseBlobStore`).

Bytes are deduplicated within an organisation only: whether an upload finds its content already
stored (and so skips the write) depends on that organisation's own data, never on another's, so
timing an upload tells nothing about what other tenants hold.

Files are 0600 and directories 0700 whatever the process umask (`open(…, 0o600)` and `mkdir(mode=0o700)`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import StorageFull, is_storage_full

HEX = frozenset("0123456789abcdef")
ORG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def make_private_dir(path: Path) -> None:
    """Create `path` as 0700 if it does not exist yet (its parent must exist)."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        make_private_dir(self.root)

    def path(self, org_id: str, digest: str) -> Path:
        if len(digest) != 64 or not HEX.issuperset(digest):
            raise ValueError("not a sha256 digest")
        if not ORG_RE.match(org_id):
            raise ValueError("not an organisation id")
        return self.root / org_id / digest[:2] / digest[2:]

    def put(self, org_id: str, content: bytes, fsync: bool = True) -> str:
        """Store the organisation's bytes (atomically, once per distinct content) and return their sha256.

        A full disk raises `StorageFull`, with no partial or temporary file left behind.
        """
        digest = hashlib.sha256(content).hexdigest()
        target = str(self.path(org_id, digest))
        if os.path.exists(target):
            return digest
        try:
            self._write(target, content, fsync)
        except OSError as exc:
            if is_storage_full(exc):
                raise StorageFull from exc
            raise
        return digest

    def _write(self, target: Path | str, content: bytes, fsync: bool) -> None:
        """Write `content` to a temporary file beside `target`, then rename it into place.

        Plain `os` calls on string paths: on the SMTP path this runs for every message, and
        `tempfile.mkstemp`, `pathlib` and a `mkdir` per call cost more than the writing itself.
        """
        target = str(target)
        tmp = f"{target.rpartition('/')[0]}/.tmp-{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:  # the first blob of this organisation or prefix
            parent = Path(target).parent
            make_private_dir(parent.parent)
            make_private_dir(parent)
            fd = os.open(tmp, flags, 0o600)
        try:
            try:
                with memoryview(content) as view:
                    while view:
                        view = view[os.write(fd, view):]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, org_id: str, digest: str) -> bytes:
        return self.path(org_id, digest).read_bytes()

    def exists(self, org_id: str, digest: str) -> bool:
        try:
            return self.path(org_id, digest).exists()
        except ValueError:
            return False

    def delete(self, org_id: str, digest: str) -> None:
        try:
            self.path(org_id, digest).unlink(missing_ok=True)
        except ValueError:
            pass

    def has_shared_layout(self) -> bool:
        """Whether blobs of the older layout, shared by every organisation, are still on disk."""
        return bool(self._shared_dirs())

    def _shared_dirs(self) -> list[Path]:
        return [d for d in self.root.iterdir() if len(d.name) == 2 and HEX.issuperset(d.name) and d.is_dir()]

    def adopt_shared_layout(self, references: Iterable[tuple[str, str]]) -> int:
        """Move blobs of the older layout shared by every organisation (`blobs/ab/cdef…`) into each
        referencing organisation's own tree; returns how many references were moved.

        Every `(org_id, digest)` in `references` gets a hard link (a copy where links fail) before
        any old file is removed, so a crash midway loses nothing and the next start finishes the job.
        Old files that nothing references are dropped with the rest.
        """
        shared = self._shared_dirs()
        moved = 0
        for org_id, digest in references:
            source = self.root / digest[:2] / digest[2:]
            try:
                target = self.path(org_id, digest)
            except ValueError:
                continue
            if target.exists() or not source.exists():
                continue
            make_private_dir(target.parent.parent)
            make_private_dir(target.parent)
            try:
                os.link(source, target)
            except OSError:
                self._write(target, source.read_bytes(), fsync=True)
            moved += 1
        # The links must be on disk before the only other names of those files go.
        os.sync()
        for directory in shared:
            for leftover in directory.iterdir():
                leftover.unlink()
            directory.rmdir()
        return moved


class DatabaseBlobStore:
    """The same interface, on PostgreSQL: bytes in the `blobs` table (org_id, sha256, content), so every
    node of a cluster reads what any node stored. A commit there is durable, so `fsync` has nothing to do."""

    def __init__(self, database: Any) -> None:
        self.database = database

    @staticmethod
    def _check(org_id: str, digest: str) -> None:
        if len(digest) != 64 or not HEX.issuperset(digest):
            raise ValueError("not a sha256 digest")
        if not ORG_RE.match(org_id):
            raise ValueError("not an organisation id")

    def put(self, org_id: str, content: bytes, fsync: bool = True) -> str:
        digest = hashlib.sha256(content).hexdigest()
        self._check(org_id, digest)
        self.database.execute("INSERT OR IGNORE INTO blobs (org_id, sha256, content) VALUES (?, ?, ?)",
                              (org_id, digest, bytes(content)))
        return digest

    def get(self, org_id: str, digest: str) -> bytes:
        self._check(org_id, digest)
        row = self.database.one("SELECT content FROM blobs WHERE org_id = ? AND sha256 = ?", (org_id, digest))
        if row is None:
            raise FileNotFoundError(f"no blob {digest}")
        return bytes(row[0])

    def exists(self, org_id: str, digest: str) -> bool:
        try:
            self._check(org_id, digest)
        except ValueError:
            return False
        return self.database.one("SELECT 1 FROM blobs WHERE org_id = ? AND sha256 = ?", (org_id, digest)) is not None

    def delete(self, org_id: str, digest: str) -> None:
        try:
            self._check(org_id, digest)
        except ValueError:
            return
        self.database.execute("DELETE FROM blobs WHERE org_id = ? AND sha256 = ?", (org_id, digest))

    def has_shared_layout(self) -> bool:
        return False

    def adopt_shared_layout(self, references: Iterable[tuple[str, str]]) -> int:
        return 0


def open_blob_store(root: Path, database: Any) -> BlobStore | DatabaseBlobStore:
    """Files under `root` beside a SQLite database; the `blobs` table when the database is PostgreSQL."""
    if database.engine == "postgresql":
        return DatabaseBlobStore(database)
    return BlobStore(root)
