"""Per-inbox retention: a background sweep deleting messages older than the inbox's `retention_days`.

It uses the deletion code of the `messages` scope (same predicates, one transaction per inbox, blob
files removed once unreferenced), so retention and user-requested deletion cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from .store.deletion import DeletionStore
from .util import iso, utcnow

if TYPE_CHECKING:
    from .server import Server
    from .services import Services

log = logging.getLogger("commune.retention")


def apply_retention(services: "Services") -> int:
    """One sweep over every inbox with a retention period; returns how many messages were deleted."""
    store = DeletionStore(services.database, services.blobs)
    inboxes = services.database.query(
        "SELECT id, org_id, retention_days FROM inboxes WHERE retention_days IS NOT NULL AND retention_days > 0"
    )
    total = 0
    for inbox in inboxes:
        cutoff = iso(utcnow() - timedelta(days=inbox["retention_days"]))
        counts = store.delete_messages(inbox["org_id"], {"inbox_id": inbox["id"], "before": cutoff})
        if counts["messages"]:
            total += counts["messages"]
            services.audit.record(inbox["org_id"], None, "retention.applied", "inbox", inbox["id"],
                                  {"before": cutoff, "deleted_counts": {k: v for k, v in counts.items() if v}})
    return total


async def _run(services: "Services") -> None:
    while True:
        try:
            deleted = apply_retention(services)
            if deleted:
                log.info("retention deleted %d message(s)", deleted)
        except Exception:
            log.exception("retention sweep failed; trying again next interval")
        await asyncio.sleep(services.settings.retention_interval)


async def start(server: "Server") -> None:
    """Component entry: sweep now and then every `retention_interval` seconds."""
    if not server.services.settings.workers_enabled:
        return
    task = asyncio.create_task(_run(server.services), name="retention")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    server.on_stop(stop)
