"""Leases and shared state on one database, the engine-neutral half of running several nodes.

A server with its workers off queues the work; "nodes" are further handles on the same database file
(each its own connection, as each node has its own) with their own node ids, using the same stores the
workers use. What must hold: two nodes never hold the same row, a dead node's rows come back once its
lease runs out, finishing clears the lease, and a key's token bucket is one bucket for every node.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.events import EventBus
from backend.ratelimit import RateLimiter, SharedRateLimiter
from backend.store.database import Database
from backend.store.delivery import DeliveryStore
from backend.store.leases import Leases, claim_named, release_named, renew_named
from backend.store.outbox import OutboxStore
from backend.store.postgres import PostgresDatabase
from backend.store.webhooks import WebhookStore
from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.smtp_sink import SmtpSink, wait_until

PARTNER = "partner-leases.test"


@pytest.fixture
def idle(engine: str, tmp_path: Path, dns_server) -> Iterator[Running]:
    """A server that queues work but runs no worker: the test's nodes do the claiming."""
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    server = start_server(tmp_path, dns_server, engine, workers_enabled=False, relay="127.0.0.1:9")
    yield server
    for database in server.handles:  # type: ignore[attr-defined]
        database.close()
    server.stop()


def handle(running: Running) -> Any:
    """Another connection to the server's database, as another node has."""
    url = running.server.settings.database_url
    database = PostgresDatabase(url, min_size=1, max_size=2) if url else Database(running.server.settings.db_path)
    running.__dict__.setdefault("handles", []).append(database)
    return database


def node(running: Running, owner: str, seconds: float = 60.0) -> DeliveryStore:
    database = handle(running)
    return DeliveryStore(database, Leases(database, "outbound_queue", owner, seconds))


def queue_sends(running: Running, count: int, prefix: str = "lease", **body: object) -> list[str]:
    with running.client() as api:
        inbox = make_inbox(api)
        ids = []
        for n in range(count):
            response = api.post("/v1/messages/send", json={
                "inbox_id": inbox["id"], "to": f"r{n}@{PARTNER}", "subject": f"{prefix} {n}", "text": "x", **body})
            assert response.status_code in (200, 202), response.text
            ids.append(response.json()["data"]["message_id"])
    return ids


def holders(database: Any, table: str) -> dict[str, str | None]:
    return {row[0]: row[1] for row in database.query(f"SELECT id, lease_owner FROM {table}")}


def test_nodes_claim_disjoint_rows_and_take_a_dead_nodes_rows_once_its_lease_runs_out(idle: Running) -> None:
    queue_sends(idle, 6)
    a, b = node(idle, "node-a", seconds=0.5), node(idle, "node-b")
    first = a.due(time.time(), 4)
    second = b.due(time.time(), 10)
    assert len(first) == 4 and len(second) == 2
    assert not {i.id for i in first} & {i.id for i in second}
    assert a.due(time.time(), 10) == [] and b.due(time.time(), 10) == []
    owners = holders(a.database, "outbound_queue")
    assert sorted(owners.values()) == ["node-a"] * 4 + ["node-b"] * 2
    time.sleep(0.6)  # node a "died": its leases run out, node b's (60 s) do not
    taken = b.due(time.time(), 10)
    assert {i.id for i in taken} == {i.id for i in first}
    b.transition(taken[0], "sent", "250 ok")
    row = b.database.one("SELECT status, lease_owner, lease_until FROM outbound_queue WHERE id = ?", (taken[0].id,))
    assert tuple(row) == ("sent", None, None)
    later = b.due(time.time() + 3600, 10)  # every lease has run out by then
    assert len(later) == 5 and taken[0].id not in {i.id for i in later}, "a finished row is never claimed again"


def test_concurrent_claims_never_share_a_row(idle: Running) -> None:
    queue_sends(idle, 30)
    claimed: list[list[str]] = [[] for _ in range(4)]
    stores = [node(idle, f"node-{n}") for n in range(4)]
    together = threading.Barrier(4)

    def work(n: int) -> None:
        store = stores[n]
        together.wait()
        while items := store.due(time.time(), 1):
            claimed[n].extend(i.id for i in items)
            time.sleep(0.002)  # as a node does between claims, so the others get the write lock
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [row_id for part in claimed for row_id in part]
    assert len(everything) == 30 and len(set(everything)) == 30
    assert sum(1 for part in claimed if part) >= 2, "the claims were meant to interleave"


def test_a_renewed_lease_keeps_its_row(idle: Running) -> None:
    queue_sends(idle, 1)
    a, b = node(idle, "node-a", seconds=0.4), node(idle, "node-b")
    (item,) = a.due(time.time(), 5)
    for _ in range(4):
        time.sleep(0.2)
        a.leases.renew([item.id], force=True)
        assert b.due(time.time(), 5) == []
    a.leases.renew([item.id])  # within a third of a lease of the last renewal: no write
    time.sleep(0.5)
    assert [i.id for i in b.due(time.time(), 5)] == [item.id]


def test_a_node_whose_lease_ran_out_gives_the_row_up_before_sending(idle: Running, engine: str) -> None:
    queue_sends(idle, 1)
    a, b = node(idle, "node-a", seconds=0.3), node(idle, "node-b")
    (item,) = a.due(time.time(), 5)
    assert a.leases.hold(item.id), "a holds the row it just claimed"
    if engine == "sqlite":  # one server owns a SQLite database: nobody else can have taken the row
        return
    time.sleep(0.4)  # a stalled past its lease (a busy machine) and b took the row over
    assert [i.id for i in b.due(time.time(), 5)] == [item.id]
    assert not a.leases.hold(item.id), "a must not send a row b now holds"
    assert b.leases.hold(item.id)
    assert holders(b.database, "outbound_queue")[item.id] == "node-b"


def test_webhook_deliveries_are_claimed_released_and_finished(idle: Running) -> None:
    def webhooks(owner: str, seconds: float = 60.0) -> WebhookStore:
        database = handle(idle)
        return WebhookStore(database, Leases(database, "webhook_deliveries", owner, seconds))

    a, b = webhooks("node-a"), webhooks("node-b")
    with a.database.transaction() as conn:
        for n in range(5):
            a.enqueue(conn, "org", "inbox", None, f"http://hook.test/{n}", "email.received", "{}", time.time())
    mine = a.due(time.time(), 3)
    theirs = b.due(time.time(), 10)
    assert len(mine) == 3 and len(theirs) == 2
    assert a.next_due_at(time.time()) is None, "nothing is free for another node"
    a.release([mine[2]["id"]])
    assert [d["id"] for d in b.due(time.time(), 10)] == [mine[2]["id"]]
    a.record_attempt(mine[0]["id"], mine[0]["endpoint"], {"attempt": 1}, "pending", time.time() - 1)
    assert holders(a.database, "webhook_deliveries")[mine[0]["id"]] is None
    assert [d["id"] for d in b.due(time.time(), 10)] == [mine[0]["id"]], "a retry is free for any node"


def test_a_due_scheduled_message_is_claimed_by_one_node(idle: Running) -> None:
    send_at = time.time() + 1.0
    (message_id,) = queue_sends(idle, 1, send_at=datetime.fromtimestamp(send_at, UTC).isoformat())

    def outbox(owner: str) -> OutboxStore:
        database = handle(idle)
        return OutboxStore(database, Leases(database, "outbox", owner, 60.0))

    a, b = outbox("node-a"), outbox("node-b")
    assert a.due(time.time(), 10) == []
    assert a.next_due_at(time.time()) == pytest.approx(send_at, abs=0.01)
    time.sleep(max(0.0, send_at - time.time()) + 0.05)
    assert [row["id"] for row in a.due(time.time(), 10)] == [message_id]
    assert b.due(time.time(), 10) == [] and b.next_due_at(time.time()) is None
    with a.database.transaction() as conn:
        assert a.move(conn, message_id, ("scheduled",), "cancelled")
    assert holders(a.database, "outbox")[message_id] is None


def test_named_lease_is_held_by_one_node_until_released_or_run_out(idle: Running) -> None:
    a, b = handle(idle), handle(idle)
    assert claim_named(a, "sweep", "node-a", 0.3)
    assert not claim_named(b, "sweep", "node-b", 0.3)
    assert claim_named(a, "sweep", "node-a", 0.3), "the holder extends its own lease"
    renew_named(b, "sweep", "node-b", 60)  # not the holder: no effect
    time.sleep(0.35)
    assert claim_named(b, "sweep", "node-b", 60)
    assert not claim_named(a, "sweep", "node-a", 60)
    release_named(a, "sweep", "node-a")  # not the holder: no effect
    assert not claim_named(a, "sweep", "node-a", 60)
    release_named(b, "sweep", "node-b")
    assert claim_named(a, "sweep", "node-a", 60)


def test_a_restarted_node_takes_its_own_leases_back_at_once(
        engine: str, tmp_path: Path, dns_server, smtp_sink: SmtpSink) -> None:
    """On SQLite every lease left in the database is a dead process's; on a shared database a node with
    a configured `node_id` clears its own (another node's run out by themselves)."""
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    settings = {"relay": f"127.0.0.1:{smtp_sink.port}", "node_id": "node-x"}
    first = start_server(tmp_path, dns_server, engine, workers_enabled=False, **settings)
    queue_sends(first, 3, prefix=f"restarted {engine}")
    first.stop()
    ghost = node(first, "node-x", seconds=3600)  # the node's previous run, killed while sending these
    assert len(ghost.due(time.time(), 10)) == 3
    ghost.database.close()
    second = start_server(tmp_path, dns_server, engine, **settings)
    try:
        def arrived() -> int:
            return sum(f"restarted {engine} ".encode() in r.data for r in list(smtp_sink.received))

        assert wait_until(lambda: arrived() >= 3, timeout=10)
    finally:
        second.stop()


def test_shared_rate_limiter_is_one_bucket_for_every_node(idle: Running) -> None:
    a = SharedRateLimiter(1, handle(idle))
    b = SharedRateLimiter(1, handle(idle))
    alone = RateLimiter(1)
    shared_results = [(a if n % 2 else b).take("key_1")[0] for n in range(6)]
    alone_results = [alone.take("key_1")[0] for _ in range(6)]
    assert shared_results == alone_results == [True, True, False, False, False, False]
    allowed, headers = a.take("key_1")
    assert not allowed and headers["ratelimit-limit"] == "2" and headers["retry-after"] == "1"
    assert a.take("key_2")[0], "each key has its own bucket"
    time.sleep(1.2)  # one token a second: one more
    assert [b.take("key_1")[0], a.take("key_1")[0]] == [True, False]


def test_events_from_two_threads_reach_a_stream_in_id_order() -> None:
    bus = EventBus()

    async def collect() -> list[int]:
        sub = bus.subscribe("org", maxsize=5000)

        def publish(name: str) -> None:
            for _ in range(1000):
                (bus.publish if name == "here" else bus.receive)(name, "org", {})

        threads = [threading.Thread(target=publish, args=(name,)) for name in ("here", "elsewhere")]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        return [(await sub.queue.get()).id for _ in range(2000)]

    ids = asyncio.run(collect())
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert ids[0] >= int(time.time() * 1000) - 60_000, "ids follow the clock"
