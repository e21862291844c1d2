"""Errors of the storage layer that callers above it handle by type."""

from __future__ import annotations

import errno
import sqlite3

try:
    from psycopg.errors import IntegrityError as _PostgresIntegrityError
except ImportError:  # the `postgres` extra is not installed
    IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
else:
    IntegrityError = (sqlite3.IntegrityError, _PostgresIntegrityError)
"""A write the schema refused (a unique key taken), on either engine: `except IntegrityError:`."""

# What a full disk or an exhausted quota looks like to a write.
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StorageFull(Exception):
    """The disk (or the database) has no room left; nothing of the failed write was kept."""

    def __init__(self, message: str = "The server has no storage space left; try again later") -> None:
        super().__init__(message)
        self.message = message


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc` is a write refused for lack of space: ENOSPC/EDQUOT, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError):
        return exc.errno in FULL_DISK_ERRNOS
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
