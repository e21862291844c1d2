"""Submitting a sent message: store it in the sender's thread, deliver to local inboxes, queue the rest.

Recipients hosted here receive it at once as inbound mail (threaded by its headers, exactly as if it
had come over SMTP); every other recipient gets an `outbound_queue` row that the outbound worker
sends from the raw bytes in the blob store. All rows, local copies and delivery events are written
in one transaction, grouped with whatever else is being stored at the same moment (`GroupCommit`).

A message that must wait (a `send_at` ahead, or an approval hold) is stored as the sender's copy only,
with its status, plus an `outbox` row holding what it will be made of. `release` later composes it,
checks its recipients again and hands it off exactly as a direct send does, in one transaction whose
guarded status change makes sure it leaves once. Every transition is an audit entry, an event on the
bus and, for inboxes subscribed to `outbox`, a signed webhook, all committed with the change itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..mail.compose import Outgoing, as_incoming, compose
from ..mail.model import IncomingAttachment
from ..models.mail import message_json
from ..store import outbox as states
from ..store.bigrams import index_message as index_bigrams
from ..store.mail import OUTBOUND_LABELS, Prepared, Stored
from ..util import new_prefixed, now_iso
from ..webhooks.payload import encode

if TYPE_CHECKING:
    from ..services import Services
    from ..store.domains import DomainStore

log = logging.getLogger("commune.outbox")

LOCAL_DETAIL = "Delivered locally to an inbox on this server"
OUTBOX_EVENTS = ("message.scheduled", "message.pending_approval", "message.approved", "message.rejected",
                 "message.cancelled")
SPEC_FIELDS = ("sender", "sender_name", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
               "in_reply_to", "references", "headers", "smtp_message_id")


@dataclass
class Hold:
    """Why and until when a submitted message waits instead of leaving now."""

    status: str
    submitted_by: str | None
    send_at: str | None = None
    due_at: float | None = None
    expires_at: str | None = None
    validation: dict | None = None


def record_delivery_event(
    conn: sqlite3.Connection, message: dict, recipient: str, event_type: str, detail: str = ""
) -> None:
    """One delivery event row for a message and recipient (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO delivery_events (id, org_id, message_id, inbox_id, domain_id, recipient, event_type, detail,"
        " created_at) SELECT ?, org_id, id, inbox_id, domain_id, ?, ?, ?, ? FROM messages WHERE id = ?",
        (new_prefixed("evt", 10), recipient, event_type, detail, now_iso(), message["message_id"]),
    )


def hand_off(conn: sqlite3.Connection, message: dict, local_inboxes: list[dict], remote: list[str]) -> None:
    """Delivery events for the local copies and one queue row per remote recipient (inside the caller's
    transaction, with the message itself)."""
    now, stamp = time.time(), now_iso()
    for inbox in local_inboxes:
        record_delivery_event(conn, message, inbox["address"], "delivered", LOCAL_DETAIL)
    for recipient in remote:
        conn.execute(
            "INSERT INTO outbound_queue (id, org_id, message_id, recipient, status, attempts, next_attempt_at,"
            " created_at, updated_at) SELECT ?, org_id, id, ?, 'queued', 0, ?, ?, ? FROM messages WHERE id = ?",
            (new_prefixed("obq", 10), recipient, now, stamp, stamp, message["message_id"]),
        )
        record_delivery_event(conn, message, recipient, "queued")


def outgoing_spec(out: Outgoing, attachment_ids: list[str]) -> dict[str, Any]:
    """What releasing a held message needs to compose it again (JSON; attachments by id)."""
    spec = {name: getattr(out, name) for name in SPEC_FIELDS}
    spec["attachment_ids"] = list(attachment_ids)
    return spec


def outgoing_from(spec: dict[str, Any], attachments: list[IncomingAttachment]) -> Outgoing:
    return Outgoing(**{name: spec[name] for name in SPEC_FIELDS}, attachments=attachments)


def recipients_of(spec: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys([*spec["to"], *spec["cc"], *spec["bcc"]]))


async def submit(
    services: Services,
    sender_inbox: dict,
    out: Outgoing,
    recipients: list[str],
    local: list[str],
    thread_id: str | None,
    attachment_ids: list[str],
    hold: Hold | None = None,
) -> dict:
    """Store, deliver locally and queue one sent message (or hold it); returns the sender's copy as JSON."""
    mail, domains = services.mail, services.domains
    local_set = set(local)
    remote = [r for r in recipients if r not in local_set]
    status = hold.status if hold else "queued" if remote else "delivered"
    org_id = sender_inbox["org_id"]
    local_inboxes = [] if hold else await services.database.run(inboxes_of, domains, local, org_id)

    def build() -> list[Prepared]:
        """Composing and the blob writes, off the event loop; the group's one sync flushes them."""
        # A held message is composed when it leaves (its Date then, its edits in); until then it has no bytes.
        raw = b"" if hold else compose(out)
        received = as_incoming(out, raw)
        sent_copy = replace(received, bcc=list(out.bcc))
        return [mail.prepare(sender_inbox, sent_copy, "outbound", thread_id=thread_id,
                             attachment_ids=attachment_ids, delivery_status=status, fsync=False),
                *(mail.prepare(inbox, received, "inbound", fsync=False) for inbox in local_inboxes)]

    prepared = await asyncio.to_thread(build)
    announced: list[dict] = []

    def after(conn: sqlite3.Connection, stored: list[Stored]) -> None:
        message = stored[0].message
        if hold is None:
            hand_off(conn, message, local_inboxes, remote)
            return
        services.outbox.hold(conn, message["message_id"], org_id, sender_inbox["id"], hold.status,
                             hold.submitted_by, outgoing_spec(out, attachment_ids), hold.validation,
                             hold.send_at, hold.due_at, hold.expires_at)
        detail = {"send_at": hold.send_at, "expires_at": hold.expires_at}
        announced.append(announce(conn, services, sender_inbox, message, f"message.{hold.status}",
                                  hold.submitted_by, detail))

    # The 200 promises the message is stored: this returns once the group's commit is synced.
    message = (await services.commit.submit(prepared, after=after))[0].message
    publish(services, sender_inbox, announced)
    if hold is not None:
        services.outbox.notify()
    return message


def inboxes_of(domains: DomainStore, addresses: list[str], org_id: str) -> list[dict]:
    """The inboxes here that receive mail sent to `addresses` by `org_id` (unknown ones left out)."""
    return [inbox for inbox in (domains.inbox_by_address(a, org_id) for a in addresses) if inbox is not None]


# transitions -------------------------------------------------------------------------------------
def wants_outbox(events: list[str] | None, event: str) -> bool:
    """An inbox receives outbox webhooks when it subscribed to `outbox` or to this event by name."""
    return bool(events) and ("outbox" in events or event in events)  # type: ignore[operator]


def announce(conn: sqlite3.Connection, services: Services, inbox: dict, message: dict, event: str,
             key_id: str | None, detail: dict[str, Any]) -> dict:
    """The audit entry and (when subscribed) the webhook of one outbox transition, inside its
    transaction; returns the event to publish once it commits."""
    org_id, message_id = inbox["org_id"], message["message_id"]
    services.audit.record(org_id, key_id, event, "message", message_id, detail, conn=conn)
    payload = {
        "event": "outbox", "type": event, "domainId": inbox["domain_id"], "inboxId": inbox["id"],
        "inboxAddress": inbox["address"], "message_id": message_id, "thread_id": message["thread_id"],
        "status": event.removeprefix("message."), **detail, "timestamp": now_iso(), "message": message,
    }
    if inbox.get("webhook_endpoint") and wants_outbox(inbox.get("webhook_events"), event):
        services.webhooks.enqueue(conn, org_id, inbox["id"], message_id, inbox["webhook_endpoint"], event,
                                  encode(payload), time.time())
    return payload


def publish(services: Services, inbox: dict, announced: list[dict]) -> None:
    for payload in announced:
        services.events.publish(payload["type"], inbox["org_id"], payload, inbox["id"], inbox["domain_id"])


def decide(services: Services, item: sqlite3.Row, before: tuple[str, ...], after: str, event: str | None,
           key_id: str | None, detail: dict[str, Any], edits: dict[str, Any] | None = None,
           **columns: Any) -> bool:
    """Move one held message from `before` to `after` (False when it is no longer there): the outbox
    row, the message's status and any approved edits, its audit entry, webhook and event."""
    inbox = services.domains.get_inbox_any(item["inbox_id"])
    announced: list[dict] = []
    with services.database.transaction() as conn:
        if not services.outbox.move(conn, item["id"], before, after, **columns):
            return False
        if edits:
            apply_edits(conn, services.database.dialect, item, edits)
        conn.execute("UPDATE messages SET delivery_status = ? WHERE id = ?", (after, item["id"]))
        message = message_json(conn.execute("SELECT * FROM messages WHERE id = ?", (item["id"],)).fetchone())
        if event is not None and inbox is not None:
            announced.append(announce(conn, services, inbox, message, event, key_id, detail))
        elif event is not None:
            services.audit.record(item["org_id"], key_id, event, "message", item["id"], detail, conn=conn)
    if inbox is not None:
        publish(services, inbox, announced)
    services.outbox.notify()
    return True


def apply_edits(conn: sqlite3.Connection, dialect: ModuleType, item: sqlite3.Row, edits: dict[str, Any]) -> None:
    """Approved edits into the sender's copy: its fields, its search entry and the thread's participants."""
    spec = edits["spec"]
    participants = [{"role": "sender", "identity": spec["sender"]}]
    for role in ("to", "cc", "bcc"):
        participants.extend({"role": role, "identity": a} for a in spec[role])
    text = edits["text_body"]
    conn.execute(
        "UPDATE messages SET subject = ?, text_body = ?, html_body = ?, participants = ? WHERE id = ?",
        (spec["subject"], text, spec["html"], json.dumps(participants), item["id"]),
    )
    dialect.message_text_changed(conn, item["seq"], (item["subject"], item["text_body"], item["sender"]),
                                 (spec["subject"], text, item["sender"]))
    index_bigrams(conn, item["seq"], spec["subject"], text, item["filenames"])
    # The participant index is kept by an insert trigger; an approver's added recipients join by hand.
    conn.executemany(
        "INSERT OR IGNORE INTO thread_participants (thread_id, address, org_id) VALUES (?, ?, ?)",
        [(item["thread_id"], p["identity"], item["org_id"]) for p in participants],
    )


# release -----------------------------------------------------------------------------------------
@dataclass
class Ready:
    """One due message checked (and then composed), ready for the release transaction."""

    item: sqlite3.Row
    inbox: dict
    spec: dict | None = None
    accepted: list[str] | None = None
    local_inboxes: list[dict] | None = None
    remote: list[str] | None = None
    attachments: dict | None = None
    raw_sha256: str | None = None
    sent_at: str | None = None
    local: list[Prepared] | None = None
    failure: str | None = None


async def release(services: Services, items: list[sqlite3.Row]) -> list[str]:
    """Send due messages now: check recipients again (suppressions may have changed), compose them all in
    one worker thread (blobs written unflushed, then one filesystem sync), then one transaction that moves
    each from scheduled/approved to sent and hands it off. Returns the ids sent."""
    inboxes = await services.database.run(lambda: [services.domains.get_inbox_any(i["inbox_id"]) for i in items])
    ready = [await _check(services, item, inbox) for item, inbox in zip(items, inboxes, strict=True)
             if inbox is not None]
    if not ready:
        return []

    def build_all() -> None:
        for one in ready:
            if one.failure is None:
                _compose(services, one)
        services.database.sync_filesystem()

    await asyncio.to_thread(build_all)
    sent, stored, announced = await services.database.run(_mark_sent, services, ready)
    services.mail.publish(stored)
    for inbox, message in announced:
        payload = {"message": message, "thread_id": message["thread_id"], "inbox_id": inbox["id"]}
        services.events.publish("message.sent", inbox["org_id"], payload, inbox["id"], inbox["domain_id"])
    if sent:
        services.delivery.notify()
    return sent


def _mark_sent(services: Services, ready: list[Ready]) -> tuple[list[str], list[Stored], list[tuple[dict, dict]]]:
    """The release transaction: each checked message moves to sent (or failed) and is handed off."""
    sent: list[str] = []
    stored: list[Stored] = []
    announced: list[tuple[dict, dict]] = []
    with services.database.transaction() as conn:
        for one in ready:
            item = one.item
            if one.failure is not None:
                if services.outbox.move(conn, item["id"], states.RELEASABLE, states.FAILED, reason=one.failure,
                                        due_at=None):
                    conn.execute("UPDATE messages SET delivery_status = 'failed' WHERE id = ?", (item["id"],))
                    services.audit.record(item["org_id"], None, "message.failed", "message", item["id"],
                                          {"reason": one.failure}, conn=conn)
                continue
            if not services.outbox.move(conn, item["id"], states.RELEASABLE, states.SENT, due_at=None):
                continue
            status = "queued" if one.remote else "delivered"
            # Now it is sent: its bytes, its Date and the `sent` label (the label triggers index it).
            labels = sorted({*json.loads(item["labels"]), *OUTBOUND_LABELS})
            conn.execute("UPDATE messages SET raw_sha256 = ?, delivery_status = ?, sent_at = ?, labels = ?"
                         " WHERE id = ?", (one.raw_sha256, status, one.sent_at, json.dumps(labels), item["id"]))
            message = message_json(conn.execute("SELECT * FROM messages WHERE id = ?", (item["id"],)).fetchone())
            stored.extend(services.mail.store(conn, p) for p in one.local or [])
            hand_off(conn, message, one.local_inboxes or [], one.remote or [])
            announced.append((one.inbox, message))
            sent.append(item["id"])
    return sent, stored, announced


async def _check(services: Services, item: sqlite3.Row, inbox: dict) -> Ready:
    """The recipients checked again and the attachments found; a failure says why it cannot leave."""
    spec = json.loads(item["payload"])
    checked = await services.validator.validate(item["org_id"], recipients_of(spec))
    if not checked.accepted:
        return Ready(item, inbox, failure="No valid recipients when it was due to leave: "
                     + ", ".join([r["email"] for r in checked.rejected] + checked.suppressed))
    rows, local_inboxes = await services.database.run(
        lambda: (services.mail.attachments_by_ids(item["org_id"], spec["attachment_ids"]),
                 inboxes_of(services.domains, checked.local, item["org_id"])))
    found = {row["id"]: row for row in rows}
    missing = [a for a in spec["attachment_ids"] if a not in found]
    if missing:
        return Ready(item, inbox, failure=f"Attachment {missing[0]} was deleted before the message left")
    local = set(checked.local)
    return Ready(item, inbox, spec=spec, accepted=checked.accepted, local_inboxes=local_inboxes,
                 remote=[a for a in checked.accepted if a not in local], attachments=found)


def _compose(services: Services, one: Ready) -> None:
    """Compose the message as it leaves and write its bytes and local copies (unflushed; in a worker thread)."""
    spec, org_id, found = one.spec, one.item["org_id"], one.attachments
    assert spec is not None and found is not None and one.accepted is not None
    attachments = [IncomingAttachment(found[a]["filename"], found[a]["mime_type"],
                                      services.blobs.get(org_id, found[a]["sha256"]))
                   for a in spec["attachment_ids"]]
    out = outgoing_from(spec, attachments)
    accepted = set(one.accepted)
    out.to, out.cc, out.bcc = ([a for a in out.to if a in accepted], [a for a in out.cc if a in accepted],
                               [a for a in out.bcc if a in accepted])
    raw = compose(out)
    received = as_incoming(out, raw)
    one.sent_at = received.date
    one.raw_sha256 = services.blobs.put(org_id, raw, fsync=False)
    one.local = [services.mail.prepare(i, received, "inbound", fsync=False) for i in one.local_inboxes or []]
