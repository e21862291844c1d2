"""Fixtures: a test DNS server, the real Commune server on free loopback ports, keys and clients."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.config import Settings
from backend.server import Server, ServerThread
from tests.dnsserver import TestDNSServer
from tests.smtp_sink import SmtpSink

_counter = itertools.count()
# Made once: httpx builds a TLS context for every client it creates unless given one (~40 ms each, loading
# the CA bundle), and the tests create thousands of clients for plain HTTP on loopback.
_TLS = httpx.create_ssl_context()


def loopback_client(base_url: str, **kwargs: object) -> httpx.Client:
    """An httpx client for a test server, sharing one TLS context with every other."""
    return httpx.Client(base_url=base_url, verify=_TLS, **kwargs)  # type: ignore[arg-type]


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
        return loopback_client(self.url, headers=headers, timeout=30, **kwargs)

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


@pytest.fixture(scope="session")
def running(tmp_path_factory: pytest.TempPathFactory, dns_server: TestDNSServer) -> Iterator[Running]:
    server = start_server(tmp_path_factory.mktemp("commune"), dns_server)
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
