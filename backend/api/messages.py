"""Messages: list with filters, and send (`POST /v1/messages/send`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ..delivery.outbox import Hold, submit
from ..delivery.validation import ValidationResult, normalise_address
from ..http.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..http.router import Route
from ..mail.compose import Outgoing, reply_references
from ..mail.model import IncomingAttachment
from ..models.mail import LabelChanges, SendMessage, message_json, thread_json
from ..store import outbox as states
from ..store.errors import IntegrityError
from ..store.mail import DIFFERENT_REQUEST, PENDING
from ..store.triage import TooManyLabels
from ..util import iso, parse_iso
from ._common import Context, data, int_arg, order_arg, parse_body, store_work
from ._paging import decode_cursor, page
from .domains import visible_domain
from .inboxes import own_inbox
from .threads import announce_deleted, label_filter, mailbox_filter, own_thread

DEFAULT_LOCAL_PART = "agent"
MAX_IDEMPOTENCY_KEY = 255
SEND_BODY_LIMIT = 10 * 1024 * 1024
"""Text and HTML of one message; attachments are uploaded on their own and referenced by id."""


def date_arg(ctx: Context, name: str) -> str | None:
    """An ISO 8601 date query parameter in the stored timestamp format; a bad date is a 400."""
    raw = ctx.request.arg(name)
    if raw is None or raw == "":
        return None
    try:
        return iso(parse_iso(raw))
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be an ISO 8601 date, e.g. 2025-03-15T08:26:31Z") from None


def _list_messages(ctx: Context) -> tuple[list, dict]:
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    sender = (ctx.request.arg("sender") or "").strip().lower() or None
    if inbox_id is None and domain_id is None and sender is None:
        raise BadRequest("inbox_id, domain_id or sender is required")
    limit = int_arg(ctx.request, "limit", 50, 1, 1000)
    order = order_arg(ctx.request, "desc")
    before, since = date_arg(ctx, "before"), date_arg(ctx, "after")
    labels = label_filter(ctx)
    scope = f"messages:{inbox_id}:{domain_id}:{sender}:{before}:{since}" + (
        f":{labels.key}" if labels.include or labels.exclude else "")
    after = decode_cursor(ctx.request.arg("cursor"), scope, order, int)
    rows = ctx.services.mail.list_messages(
        ctx.org_id, inbox_id=inbox_id, domain_id=domain_id, sender=sender, before=before, since=since,
        order=order, limit=limit + 1, after=after, labels=labels,
    )
    rows, next_cursor, has_more = page(rows, limit, scope, order, lambda r: (r["created_at"], r["seq"]))
    return rows, {"data": [message_json(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


async def list_messages(ctx: Context) -> dict:
    """`GET /v1/messages`: filtered by inbox, domain and/or sender, newest first, keyset-paged."""
    rows, result = await ctx.run(_list_messages, ctx)
    await ctx.services.mail.extractions.attach(rows, result["data"])
    return result


async def get_message(ctx: Context) -> dict:
    """`GET /v1/messages/{message_id}`: one message with its codes and links."""
    row = await ctx.run(own_message, ctx)
    message = message_json(row)
    await ctx.services.mail.extractions.attach([row], [message])
    return data(message)


def own_message(ctx: Context) -> sqlite3.Row:
    row = ctx.services.mail.get_message(ctx.org_id, ctx.params["message_id"])
    if row is None:
        raise NotFound("Message not found")
    return row


def _relabel(ctx: Context) -> sqlite3.Row:
    add, remove = parse_body(ctx.request, LabelChanges).label_changes
    own_message(ctx)
    try:
        row = ctx.services.triage.relabel_message(ctx.org_id, ctx.params["message_id"], add, remove)
    except TooManyLabels as exc:
        raise BadRequest(f"Invalid request: add_labels: {exc}") from exc
    if row is None:
        raise NotFound("Message not found")
    thread = ctx.services.mail.get_thread(ctx.org_id, row["thread_id"])
    if thread is not None and (add or remove):
        ctx.services.events.publish("thread.updated", ctx.org_id, thread_json(thread), row["inbox_id"],
                                    row["domain_id"])
    return row


async def patch_message(ctx: Context) -> dict:
    """`PATCH /v1/messages/{id}`: add and remove labels; answers the updated message."""
    row = await ctx.run(_relabel, ctx)
    message = message_json(row)
    await ctx.services.mail.extractions.attach([row], [message])
    return data(message)


@store_work
def delete_message(ctx: Context) -> dict:
    """`DELETE /v1/messages/{id}`: the message for good (its thread goes too when left empty); attachments
    and blob files no longer referenced go with it. Audit-logged in the same transaction."""
    row = own_message(ctx)

    def audit(conn: sqlite3.Connection) -> None:
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "message.deleted", "message", row["id"],
                                  {"inbox_id": row["inbox_id"], "thread_id": row["thread_id"]}, conn=conn)

    counts = ctx.services.deletion.delete_messages(ctx.org_id, {"message_id": row["id"]}, audit)
    announce_deleted(ctx, {"id": row["thread_id"], "inbox_id": row["inbox_id"], "domain_id": row["domain_id"]})
    return data({"id": row["id"], "deleted": True, "deleted_counts": {k: v for k, v in counts.items() if v}})


def domain_sender(ctx: Context, domain_id: str) -> dict:
    """`agent@<domain>` for a send given only `domainId`, created on first use (as the API reference
    describes) when the organisation owns the domain and has verified it."""
    store = ctx.services.domains
    domain = visible_domain(ctx, domain_id)
    address = f"{DEFAULT_LOCAL_PART}@{domain['name']}"
    inbox = store.own_inbox_by_address(ctx.org_id, address)
    if inbox is not None and inbox["domain_id"] == domain["id"]:
        return inbox
    if domain["shared"] or domain["org_id"] != ctx.org_id or domain["status"] != "verified":
        raise BadRequest(f"domainId: there is no inbox {address} to send from and the domain is not one"
                         " of your verified domains; verify it, create the inbox or pass inboxId")
    try:
        inbox = store.create_inbox(ctx.org_id, domain, DEFAULT_LOCAL_PART, None, None)
    except IntegrityError:
        # A concurrent first send created it.
        inbox = store.own_inbox_by_address(ctx.org_id, address)
        if inbox is None or inbox["domain_id"] != domain["id"]:
            raise Conflict(f"Address {address} is already taken") from None
        return inbox
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "inbox.created", "inbox", inbox["id"],
                              {"address": inbox["address"], "reason": "first send with domainId"})
    return inbox


def resolve_sender(ctx: Context, body: SendMessage, thread: dict | None) -> tuple[dict, str | None]:
    """The sending inbox and display name: `from`, then `inboxId`, then `domainId`, then the thread's inbox."""
    store = ctx.services.domains
    inbox = own_inbox(ctx, body.inbox_id) if body.inbox_id else None
    name: str | None = None
    if body.sender is not None:
        name, address = body.sender.name, normalise_address(body.sender.address)
        found = store.own_inbox_by_address(ctx.org_id, address) if address else None
        if found is None:
            raise BadRequest(f"from: '{body.from_}' is not the address of one of your inboxes")
        if inbox is not None and inbox["id"] != found["id"]:
            raise BadRequest("from: the address does not belong to the inbox given as inboxId")
        inbox = found
    if inbox is None and body.domain_id:
        inbox = domain_sender(ctx, body.domain_id)
    if inbox is None and thread is not None:
        inbox = own_inbox(ctx, thread["inbox_id"])
    if inbox is None:
        raise BadRequest("No sender: pass inboxId (or inbox_id), from or domainId; this server has no default sender")
    if body.domain_id and inbox["domain_id"] != body.domain_id:
        visible_domain(ctx, body.domain_id)
        raise BadRequest("domainId: the sending inbox is not on this domain")
    if thread is not None and thread["inbox_id"] != inbox["id"]:
        raise BadRequest("thread_id: the thread belongs to another inbox than the sender")
    return inbox, name or inbox.get("display_name") or None


def attachment_rows(ctx: Context, ids: list[str]) -> list[sqlite3.Row]:
    """The caller's attachments by id; another organisation's id is a 404."""
    unique = list(dict.fromkeys(ids))
    rows = ctx.services.mail.attachments_by_ids(ctx.org_id, unique)
    found = {row["id"] for row in rows}
    for attachment_id in unique:
        if attachment_id not in found:
            raise NotFound(f"Attachment {attachment_id} not found")
    if sum(row["size"] for row in rows) > ctx.services.settings.max_message_bytes:
        raise PayloadTooLarge("attachments: together they exceed the maximum message size")
    return rows


async def load_attachments(ctx: Context, rows: list[sqlite3.Row]) -> list[IncomingAttachment]:
    """The attachments of `attachment_rows` with their bytes."""
    blobs = ctx.services.blobs

    def read() -> list[IncomingAttachment]:
        return [IncomingAttachment(row["filename"], row["mime_type"], blobs.get(ctx.org_id, row["sha256"])) for row in rows]

    return await asyncio.to_thread(read) if rows else []


def nobody_left(validation: dict, lead: str = "No valid recipients") -> str:
    """The 400 message when validation leaves no recipient: each address with its reason."""
    reasons = [f"{r['email']} ({r['reason']})" for r in validation["rejected"]]
    reasons += [f"{email} (suppressed)" for email in validation["suppressed"]]
    return f"{lead}: " + "; ".join(reasons)


def needs_approval(ctx: Context, inbox: dict, recipients: list[str]) -> bool:
    """A person must approve: the key holds its sends, or the inbox holds all mail, or any mail leaving
    the organisation's own domains (`external`)."""
    setting = inbox.get("approval") or "none"
    if ctx.key.hold_sends or setting == "all":
        return True
    if setting != "external":
        return False
    own = ctx.services.domains.own_domain_names(ctx.org_id)
    return any(address.rsplit("@", 1)[-1] not in own for address in recipients)


def hold_for(ctx: Context, inbox: dict, send_at: str | None, checked) -> Hold | None:
    """Why this send waits, if it does: an approval hold (expiring after the inbox's timeout) first, then a
    `send_at` still ahead; a `send_at` already past sends now."""
    now = time.time()
    due = parse_iso(send_at).timestamp() if send_at else None
    if due is not None and due <= now:
        send_at, due = None, None
    if needs_approval(ctx, inbox, checked.accepted):
        expires = now + (inbox.get("approval_timeout_hours") or 72) * 3600
        return Hold(states.PENDING, ctx.key.id, send_at, expires, iso_at(expires), checked.report())
    if due is not None:
        return Hold(states.SCHEDULED, ctx.key.id, send_at, due, None, checked.report())
    return None


def iso_at(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def _sender(ctx: Context, body: SendMessage) -> tuple[dict | None, dict, str | None, list[sqlite3.Row]]:
    """A send's thread, sending inbox, display name and attachment rows, each checked to be the caller's."""
    thread = own_thread(ctx, body.thread_id) if body.thread_id else None
    inbox, sender_name = resolve_sender(ctx, body, thread)
    if None in (normalise_address(a) for a in body.reply_to):
        raise BadRequest("reply_to: every entry must be a valid email address")
    limit = ctx.services.settings.max_recipients
    if len(body.to) + len(body.cc) + len(body.bcc) > limit:
        raise BadRequest(f"to, cc and bcc: at most {limit} recipients per message")
    return thread, inbox, sender_name, attachment_rows(ctx, body.attachments)


def _reply_and_hold(ctx: Context, thread: dict | None, inbox: dict, send_at: str | None,
                    checked: ValidationResult) -> tuple[str | None, list[str], Hold | None]:
    """The threading headers of a reply (`In-Reply-To`, `References`) and why the send waits, if it does."""
    in_reply_to, references = None, []
    if thread is not None:
        parent, parent_refs = ctx.services.mail.last_message_ids(thread["id"])
        in_reply_to, references = parent, reply_references(parent, parent_refs)
    return in_reply_to, references, hold_for(ctx, inbox, send_at, checked)


async def _send(ctx: Context, body: SendMessage) -> dict | tuple[int, dict]:
    thread, inbox, sender_name, rows = await ctx.run(_sender, ctx, body)
    reply_to = [normalise_address(a) for a in body.reply_to]
    attachments = await load_attachments(ctx, rows)
    checked = await ctx.services.validator.validate(ctx.org_id, [*body.to, *body.cc, *body.bcc])
    if not checked.accepted:
        raise BadRequest(nobody_left(checked.report()))
    accepted = set(checked.accepted)

    def keep(addresses: list[str]) -> list[str]:
        clean = (normalise_address(a) for a in addresses)
        return list(dict.fromkeys(a for a in clean if a in accepted))

    in_reply_to, references, hold = await ctx.run(_reply_and_hold, ctx, thread, inbox, body.send_at, checked)
    out = Outgoing(
        sender=inbox["address"], sender_name=sender_name, to=keep(body.to), cc=keep(body.cc),
        bcc=keep(body.bcc), reply_to=reply_to, subject=body.subject, text=body.text, html=body.html,  # type: ignore[arg-type]
        in_reply_to=in_reply_to, references=references, attachments=attachments, headers=body.headers,
    )
    message = await submit(ctx.services, inbox, out, checked.accepted, checked.local,
                           thread["id"] if thread else None, list(dict.fromkeys(body.attachments)), hold)
    result = data({
        "id": message["message_id"],
        "message_id": message["message_id"],
        "thread_id": message["thread_id"],
        "smtp_message_id": out.smtp_message_id,
        "status": message["metadata"]["delivery_status"],
    }, id=message["message_id"], messageId=message["message_id"], status=message["metadata"]["delivery_status"])
    if checked.noteworthy:
        result["validation"] = checked.report()
    if hold is None:
        return result
    result["data"].update(send_at=hold.send_at, expires_at=hold.expires_at)
    return 202, result


def answer(result: dict) -> dict | tuple[int, dict]:
    """A stored send result as first answered: `202` for a message that waits."""
    return (202, result) if result.get("data", {}).get("status") in states.WAITING else result


def request_fingerprint(ctx: Context) -> str:
    """A hash of what the request asks for: method, path, organisation and the body as canonical JSON,
    so the same request re-sent with other key order or spacing still matches."""
    body = json.dumps(ctx.request.json_object(), sort_keys=True, separators=(",", ":"))
    canonical = json.dumps([ctx.request.method, ctx.request.path, ctx.org_id, body])
    return hashlib.sha256(canonical.encode()).hexdigest()


async def send_message(ctx: Context) -> dict | tuple[int, dict]:
    """`POST /v1/messages/send`; a repeated `Idempotency-Key` (24 h) answers the first result again,
    and the same key with a different request is a 409."""
    body = parse_body(ctx.request, SendMessage)
    return await once(ctx, lambda: _send(ctx, body))


async def once(ctx: Context, run: Callable[[], Awaitable[dict | tuple[int, dict]]]) -> dict | tuple[int, dict]:
    """Run a send under the request's `Idempotency-Key`, if it has one."""
    key = ctx.request.headers.get("idempotency-key", "").strip()
    if not key:
        return await run()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters")
    mail = ctx.services.mail
    earlier = await ctx.run(mail.claim_idempotency_key, ctx.org_id, key, request_fingerprint(ctx))
    if earlier == DIFFERENT_REQUEST:
        raise Conflict(f"Idempotency-Key '{key}' was already used for a different request;"
                       " use a new key for a new message")
    if earlier == PENDING:
        raise Conflict(f"A request with Idempotency-Key '{key}' is still being processed")
    if earlier is not None:
        return answer(earlier)
    try:
        result = await run()
    except BaseException:
        await ctx.run(mail.release_idempotency_key, ctx.org_id, key)
        raise
    await ctx.run(mail.save_idempotency_key, ctx.org_id, key, result[1] if isinstance(result, tuple) else result)
    return result


ROUTES = [
    Route("POST", "/v1/messages/send", send_message, "messages:write", "Send an email",
          body_limit=SEND_BODY_LIMIT),
    Route("GET", "/v1/messages", list_messages, "messages:read", "List messages"),
    Route("GET", "/v1/messages/{message_id}", get_message, "messages:read", "A message with its codes and links"),
    Route("PATCH", "/v1/messages/{message_id}", patch_message, "messages:write", "Add or remove a message's labels"),
    Route("DELETE", "/v1/messages/{message_id}", delete_message, "messages:write",
          "Delete a message permanently"),
]
