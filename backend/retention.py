"""Per-inbox retention: a background sweep deleting messages older than the inbox's `retention_days`, and
threads that have been in the trash longer than its `trash_days`.

It uses the deletion code of the `messages` scope (same predicates, one transaction per inbox, blob
files removed once unreferenced), so retention and user-requested deletion cannot drift apart. With
several nodes on one database, a sweep runs on one node at a time: the one holding the `retention`
lease (store/leases.py), renewed between batches and given up when the sweep ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from .store.leases import claim_named, release_named, renew_named
from .util import iso, utcnow

if TYPE_CHECKING:
    from sqlite3 import Row

    from .server import Server
    from .services import Services

log = logging.getLogger("commune.retention")


LEASE = "retention"
BATCH = 1000
TRASH_BATCH = 100
"""Threads purged from the trash per transaction."""


def _batch_end(services: Services, inbox_id: str, cutoff: str) -> str | None:
    """Arrival time of the BATCH-th oldest expired message (or of the last one, when there are fewer)."""
    row = services.database.one(
        "SELECT created_at FROM (SELECT created_at FROM messages WHERE inbox_id = ? AND created_at < ?"
        " ORDER BY created_at LIMIT ?) ORDER BY created_at DESC LIMIT 1",
        (inbox_id, cutoff, BATCH),
    )
    return row[0] if row else None


def keep_lease(services: Services) -> None:
    """Between batches of a long sweep: extend the lease if this node holds it (no-op otherwise)."""
    renew_named(services.database, LEASE, services.node_id, services.settings.lease_seconds)


def _expire_batch(services: Services, inbox: Row, cutoff: str) -> dict[str, int] | None:
    """Delete one batch of the inbox's mail older than `cutoff`; the counts, or None when none is left."""
    until = _batch_end(services, inbox["id"], cutoff)
    if until is None:
        return None
    return services.deletion.delete_messages(inbox["org_id"], {"inbox_id": inbox["id"], "before": cutoff,
                                                               "until": until})


def _purge_batch(services: Services, inbox: Row, cutoff: str) -> dict[str, int] | None:
    """Delete one batch of threads in the inbox's trash since before `cutoff`; None when none is left."""
    threads = [row[0] for row in services.database.query(
        "SELECT thread_id FROM thread_labels WHERE inbox_id = ? AND label = 'trash' AND added_at < ? LIMIT ?",
        (inbox["id"], cutoff, TRASH_BATCH),
    )]
    if not threads:
        return None
    return services.deletion.delete_messages(inbox["org_id"], {"inbox_id": inbox["id"],
                                                               "thread_ids": json.dumps(threads)})


async def apply_retention(services: Services) -> int:
    """One sweep over every inbox with a retention period; returns how many messages were deleted.

    Expired mail goes in batches of about BATCH messages, one transaction each, yielding the event loop
    in between, so a first sweep over a large inbox does not stall the server.
    """
    inboxes = await services.database.run(
        services.database.query,
        "SELECT id, org_id, retention_days FROM inboxes WHERE retention_days IS NOT NULL AND retention_days > 0",
    )
    total = 0
    for inbox in inboxes:
        cutoff = iso(utcnow() - timedelta(days=inbox["retention_days"]))
        deleted: dict[str, int] = {}
        while (counts := await services.database.run(_expire_batch, services, inbox, cutoff)) is not None:
            for name, count in counts.items():
                deleted[name] = deleted.get(name, 0) + count
            await services.database.run(keep_lease, services)
            await asyncio.sleep(0)
        if deleted.get("messages"):
            total += deleted["messages"]
            await services.database.run(
                services.audit.record, inbox["org_id"], None, "retention.applied", "inbox", inbox["id"],
                {"before": cutoff, "deleted_counts": {k: v for k, v in deleted.items() if v}})
    return total + await purge_trash(services)


async def purge_trash(services: Services) -> int:
    """Delete for good the threads in each inbox's trash since more than `trash_days` (from the time the
    thread got the `trash` label); returns how many messages went."""
    inboxes = await services.database.run(
        services.database.query, "SELECT id, org_id, trash_days FROM inboxes WHERE trash_days > 0")
    total = 0
    for inbox in inboxes:
        cutoff = iso(utcnow() - timedelta(days=inbox["trash_days"]))
        deleted: dict[str, int] = {}
        while (counts := await services.database.run(_purge_batch, services, inbox, cutoff)) is not None:
            for name, count in counts.items():
                deleted[name] = deleted.get(name, 0) + count
            if not counts["thread_metadata"]:
                break  # never spin on rows that cannot go
            await services.database.run(keep_lease, services)
            await asyncio.sleep(0)
        if deleted:
            total += deleted.get("messages", 0)
            await services.database.run(
                services.audit.record, inbox["org_id"], None, "trash.purged", "inbox", inbox["id"],
                {"before": cutoff, "deleted_counts": {k: v for k, v in deleted.items() if v}})
    return total


async def sweep(services: Services) -> int | None:
    """One sweep if no other node is sweeping (None when one is): under the `retention` lease."""
    database, node, seconds = services.database, services.node_id, services.settings.lease_seconds
    if not await database.run(claim_named, database, LEASE, node, seconds):
        return None
    try:
        return await apply_retention(services)
    finally:
        await database.run(release_named, database, LEASE, node)


async def _run(services: Services) -> None:
    while True:
        try:
            deleted = await sweep(services)
            if deleted:
                log.info("retention deleted %d message(s)", deleted)
        except Exception:
            log.exception("retention sweep failed; trying again next interval")
        await asyncio.sleep(services.settings.retention_interval)


async def start(server: Server) -> None:
    """Component entry: sweep now and then every `retention_interval` seconds."""
    if not server.services.settings.workers_enabled:
        return
    task = asyncio.create_task(_run(server.services), name="retention")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    server.on_stop(stop)
