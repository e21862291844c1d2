"""Submitting a sent message: store it in the sender's thread, deliver to local inboxes, queue the rest.

Recipients hosted here receive it at once as inbound mail (threaded by its headers, exactly as if it
had come over SMTP); every other recipient gets an `outbound_queue` row that the outbound worker
sends from the raw bytes in the blob store. All rows, local copies and delivery events are written
in one transaction, grouped with whatever else is being stored at the same moment (`GroupCommit`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace

from ..mail.compose import Outgoing, as_incoming, compose
from ..smtp.commit import GroupCommit
from ..store.domains import DomainStore
from ..store.mail import Prepared, Stored
from ..util import new_prefixed, now_iso

LOCAL_DETAIL = "Delivered locally to an inbox on this server"


def record_delivery_event(
    conn: sqlite3.Connection, message: dict, recipient: str, event_type: str, detail: str = ""
) -> None:
    """One delivery event row for a message and recipient (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO delivery_events (id, org_id, message_id, inbox_id, domain_id, recipient, event_type, detail,"
        " created_at) SELECT ?, org_id, id, inbox_id, domain_id, ?, ?, ?, ? FROM messages WHERE id = ?",
        (new_prefixed("evt", 10), recipient, event_type, detail, now_iso(), message["message_id"]),
    )


async def submit(
    commit: GroupCommit,
    domains: DomainStore,
    sender_inbox: dict,
    out: Outgoing,
    recipients: list[str],
    local: list[str],
    thread_id: str | None,
    attachment_ids: list[str],
) -> dict:
    """Store, deliver locally and queue one sent message; returns the sender's copy as message JSON."""
    local_set = set(local)
    remote = [r for r in recipients if r not in local_set]
    status = "queued" if remote else "delivered"
    org_id = sender_inbox["org_id"]
    mail = commit.mail
    local_inboxes = [inbox for inbox in (domains.inbox_by_address(a, org_id) for a in local) if inbox is not None]

    def build() -> list[Prepared]:
        """Composing and the blob writes, off the event loop; the group's one sync flushes them."""
        raw = compose(out)
        received = as_incoming(out, raw)
        sent_copy = replace(received, bcc=list(out.bcc))
        return [mail.prepare(sender_inbox, sent_copy, "outbound", thread_id=thread_id,
                             attachment_ids=attachment_ids, delivery_status=status, fsync=False),
                *(mail.prepare(inbox, received, "inbound", fsync=False) for inbox in local_inboxes)]

    prepared = await asyncio.to_thread(build)

    def hand_off(conn: sqlite3.Connection, stored: list[Stored]) -> None:
        message = stored[0].message
        now, stamp = time.time(), now_iso()
        for inbox in local_inboxes:
            record_delivery_event(conn, message, inbox["address"], "delivered", LOCAL_DETAIL)
        for recipient in remote:
            conn.execute(
                "INSERT INTO outbound_queue (id, org_id, message_id, recipient, status, attempts, next_attempt_at,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
                (new_prefixed("obq", 10), org_id, message["message_id"], recipient, now, stamp,
                 stamp),
            )
            record_delivery_event(conn, message, recipient, "queued")

    # The 200 promises the message is stored: this returns once the group's commit is synced.
    return (await commit.submit(prepared, after=hand_off))[0].message
