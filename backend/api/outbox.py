"""The outbox: drafts, the approval queue, and deciding on held or scheduled messages.

`POST /v1/messages/send` (and a draft's send) holds a message when a person must approve it or when
its `send_at` lies ahead; these routes list what waits and move it on. Approving needs
`approvals:write`, which only `admin` includes, and never works on a message the same key submitted.
"""

from __future__ import annotations

import difflib
import json
import time
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..auth import has_scope
from ..delivery.outbox import decide, recipients_of, release
from ..delivery.validation import normalise_address
from ..http.errors import BadRequest, Conflict, Forbidden, NotFound
from ..http.router import Route
from ..mail.render import html_to_text
from ..models.mail import MessageFields, SendMessage, message_json
from ..store import outbox as states
from ..util import parse_iso
from ._common import (
    Context,
    data,
    describe_validation_error,
    int_arg,
    order_arg,
    parse_body,
    store_work,
)
from ._paging import decode_cursor, page
from .inboxes import own_inbox
from .messages import SEND_BODY_LIMIT, _send, nobody_left, once, resolve_sender
from .threads import own_thread

DRAFT_FIELDS = ("inbox_id", "from", "to", "cc", "bcc", "reply_to", "subject", "text", "html", "attachments",
                "thread_id", "in_reply_to", "headers", "send_at")
EDITABLE = ("subject", "text", "html", "to", "cc", "bcc")
MAX_REASON = 1000
RELEASE_GRACE = 5.0
"""Seconds before the worker takes over an approved message the approving request is releasing itself
(it does so only if that request died mid-way)."""


# drafts --------------------------------------------------------------------------------------------
class DraftBody(MessageFields):
    """`POST /v1/drafts` and `PATCH /v1/drafts/{id}`: a message to send later, any part of it still empty."""

    in_reply_to: str | None = Field(None, validation_alias=AliasChoices("in_reply_to", "inReplyTo"),
                                    max_length=998)


def draft_json(row: Any) -> dict[str, Any]:
    payload = json.loads(row["payload"])
    body = {name: payload.get(name) for name in DRAFT_FIELDS}
    return {
        "id": row["id"], "draft_id": row["id"], **body, "inbox_id": row["inbox_id"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "inboxId": row["inbox_id"], "threadId": payload.get("thread_id"), "sendAt": payload.get("send_at"),
    }


def missing_attachments(ctx: Context, ids: list[str]) -> None:
    """A draft's attachments must still exist: a deleted one is a 400 that names it."""
    found = {row["id"] for row in ctx.services.mail.attachments_by_ids(ctx.org_id, list(dict.fromkeys(ids)))}
    for attachment_id in ids:
        if attachment_id not in found:
            raise BadRequest(f"attachments: {attachment_id} does not exist (was it deleted?);"
                             " remove it from the draft")


def draft_payload(ctx: Context, body: DraftBody, current: dict[str, Any] | None) -> tuple[str, dict]:
    """The draft's stored fields (the old ones with the new ones over them) and its sending inbox."""
    payload = dict(current or {name: None for name in DRAFT_FIELDS})
    # A new sender given one way replaces the old one given the other way.
    given = body.model_fields_set
    if "from_" in given and "inbox_id" not in given:
        payload["inbox_id"] = None
    if "inbox_id" in given and "from_" not in given:
        payload["from"] = None
    for name in given:
        wire = "from" if name == "from_" else name
        if wire in DRAFT_FIELDS:
            payload[wire] = getattr(body, name)
    for name in ("to", "cc", "bcc", "reply_to", "attachments"):
        payload[name] = payload.get(name) or []
    payload["headers"] = payload.get("headers") or {}
    limit = ctx.services.settings.max_recipients
    if len(payload["to"]) + len(payload["cc"]) + len(payload["bcc"]) > limit:
        raise BadRequest(f"to, cc and bcc: at most {limit} recipients per message")
    missing_attachments(ctx, payload["attachments"])
    sender = MessageFields.model_validate({"from": payload["from"], "inbox_id": payload["inbox_id"]})
    thread = own_thread(ctx, payload["thread_id"]) if payload["thread_id"] else None
    inbox, _ = resolve_sender(ctx, sender, thread)
    if payload["in_reply_to"]:
        payload["thread_id"] = reply_thread(ctx, inbox, payload["in_reply_to"])
    payload["inbox_id"] = inbox["id"]
    return inbox["id"], payload


def reply_thread(ctx: Context, inbox: dict, in_reply_to: str) -> str:
    """The thread of the message a draft answers: by our id (`msg_…`) or its Message-ID, in the inbox."""
    row = ctx.services.mail.get_message(ctx.org_id, in_reply_to)
    if row is None:
        row = ctx.services.database.one(
            "SELECT thread_id, inbox_id FROM messages WHERE inbox_id = ? AND smtp_message_id = ? LIMIT 1",
            (inbox["id"], in_reply_to),
        )
    if row is None or row["inbox_id"] != inbox["id"]:
        raise BadRequest("in_reply_to: no such message in the sending inbox")
    return row["thread_id"]


def own_draft(ctx: Context) -> Any:
    row = ctx.services.outbox.get_draft(ctx.org_id, ctx.params["draft_id"])
    if row is None:
        raise NotFound("Draft not found")
    return row


@store_work
def create_draft(ctx: Context) -> tuple[int, dict]:
    body = parse_body(ctx.request, DraftBody)
    inbox_id, payload = draft_payload(ctx, body, None)
    row = ctx.services.outbox.create_draft(ctx.org_id, inbox_id, payload)
    return 201, data(draft_json(row))


@store_work
def list_drafts(ctx: Context) -> dict:
    inbox_id = ctx.request.arg("inbox_id", "inboxId") or None
    if inbox_id is not None:
        own_inbox(ctx, inbox_id)
    return listing(ctx, states.DRAFT, inbox_id, "desc", draft_json)


def listing(ctx: Context, status: str, inbox_id: str | None, default_order: str, render: Any) -> dict:
    """One outbox status as a keyset-paged list in the asked order: by submission, scheduled ones by `send_at`."""
    limit = int_arg(ctx.request, "limit", 50, 1, 200)
    order = order_arg(ctx.request, default_order)
    scope = f"outbox:{status}:{inbox_id}"
    after = decode_cursor(ctx.request.arg("cursor"), scope, order, int)
    drafts = status == states.DRAFT
    rows = ctx.services.outbox.list_rows(ctx.org_id, status, inbox_id, order, limit + 1, after,
                                         "SELECT o.* FROM outbox o" if drafts else states.ITEM_SELECT)
    time_key = "created_at" if drafts else "send_at" if status == states.SCHEDULED else "outbox_created_at"
    seq = "seq" if drafts else "outbox_seq"
    rows, next_cursor, has_more = page(rows, limit, scope, order, lambda r: (r[time_key], r[seq]))
    return {"data": [render(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


@store_work
def get_draft(ctx: Context) -> dict:
    return data(draft_json(own_draft(ctx)))


@store_work
def update_draft(ctx: Context) -> dict:
    row = own_draft(ctx)
    body = parse_body(ctx.request, DraftBody)
    inbox_id, payload = draft_payload(ctx, body, json.loads(row["payload"]))
    updated = ctx.services.outbox.update_draft(ctx.org_id, row["id"], inbox_id, payload)
    if updated is None:
        raise Conflict("The draft is being sent")
    return data(draft_json(updated))


@store_work
def delete_draft(ctx: Context) -> dict:
    row = own_draft(ctx)
    if not ctx.services.outbox.delete_draft(ctx.org_id, row["id"]):
        raise Conflict("The draft is being sent")
    return data({"ok": True, "id": row["id"], "deleted": True})


def _claim_draft(ctx: Context) -> tuple[Any, SendMessage]:
    """The caller's draft, checked as a send, claimed so no other request sends it too."""
    row = own_draft(ctx)
    if not has_scope(ctx.scopes, "messages:write"):
        raise Forbidden("This API key lacks the 'messages:write' permission")
    payload = json.loads(row["payload"])
    missing_attachments(ctx, payload["attachments"])
    fields = {name: payload[name] for name in DRAFT_FIELDS if name != "in_reply_to" and payload.get(name) is not None}
    try:
        body = SendMessage.model_validate(fields)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from exc
    if not ctx.services.outbox.claim_draft(ctx.org_id, row["id"]):
        raise Conflict("The draft is already being sent")
    return row, body


async def send_draft(ctx: Context) -> dict | tuple[int, dict]:
    """`POST /v1/drafts/{id}/send`: sent exactly as `POST /v1/messages/send` would send it (held or
    scheduled alike); the draft is gone once the send is stored."""
    row, body = await ctx.run(_claim_draft, ctx)
    store = ctx.services.outbox
    try:
        result = await once(ctx, lambda: _send(ctx, body))
    except BaseException:
        await ctx.run(store.claim_draft, ctx.org_id, row["id"], claim=False)
        raise
    await ctx.run(store.delete_draft, ctx.org_id, row["id"], states.SENDING)
    return result


# held and scheduled messages -----------------------------------------------------------------------
def item_json(row: Any) -> dict[str, Any]:
    """One held or scheduled message: where it stands in the outbox, its verdict and the message itself."""
    return {
        "id": row["id"], "message_id": row["id"], "thread_id": row["thread_id"], "inbox_id": row["inbox_id"],
        "status": row["outbox_status"], "send_at": row["send_at"], "expires_at": row["expires_at"],
        "reason": row["reason"], "submitted_by": row["submitted_by"], "decided_by": row["decided_by"],
        "validation": json.loads(row["validation"]) if row["validation"] else None,
        "created_at": row["outbox_created_at"], "updated_at": row["updated_at"],
        "message": message_json(row),
    }


def outbox_item(ctx: Context) -> Any:
    """The caller's held or scheduled message; one that never waited (sent at once, or received) is a 409."""
    message_id = ctx.params["message_id"]
    row = ctx.services.outbox.get_item(ctx.org_id, message_id)
    if row is not None:
        return row
    if ctx.services.mail.get_message(ctx.org_id, message_id) is None:
        raise NotFound("Message not found")
    raise Conflict("This message was never held or scheduled: it has already left (or was received)")


def not_waiting(row: Any, wanted: str) -> Conflict:
    status = row["outbox_status"]
    why = "it has already left" if status == states.SENT else f"it is {status}"
    return Conflict(f"The message is not {wanted}: {why}")


@store_work
def list_approvals(ctx: Context) -> dict:
    """`GET /v1/approvals`: messages waiting for a person, oldest first, with their validation verdicts."""
    inbox_id = ctx.request.arg("inbox_id", "inboxId") or None
    if inbox_id is not None:
        own_inbox(ctx, inbox_id)
    return listing(ctx, states.PENDING, inbox_id, "asc", item_json)


@store_work
def list_outbox(ctx: Context) -> dict:
    """`GET /v1/outbox`: held or scheduled messages by status (default `scheduled`, soonest first)."""
    inbox_id = ctx.request.arg("inbox_id", "inboxId") or None
    if inbox_id is not None:
        own_inbox(ctx, inbox_id)
    status = ctx.request.arg("status") or states.SCHEDULED
    if status not in states.ITEM_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(states.ITEM_STATUSES)}")
    return listing(ctx, status, inbox_id, "asc", item_json)


@store_work
def outbox_counts(ctx: Context) -> dict:
    """`GET /v1/outbox/counts`: drafts, messages awaiting approval and scheduled ones (per inbox or all)."""
    inbox_id = ctx.request.arg("inbox_id", "inboxId") or None
    if inbox_id is not None:
        own_inbox(ctx, inbox_id)
    counts = ctx.services.outbox.counts(ctx.org_id, inbox_id)
    return data({"drafts": counts.get(states.DRAFT, 0), "pending_approval": counts.get(states.PENDING, 0),
                 "scheduled": counts.get(states.SCHEDULED, 0)})


class ApproveBody(BaseModel):
    """Optional edits an approver makes before the message leaves."""

    model_config = ConfigDict(extra="ignore")

    subject: str | None = None
    text: str | None = None
    html: str | None = None
    to: list[str] | None = None
    cc: list[str] | None = None
    bcc: list[str] | None = None

    @field_validator("subject", "text", "html", "to", "cc", "bcc", mode="before")
    @classmethod
    def _checked(cls, value: Any, info: Any) -> Any:
        """The same rules as a send (addresses, one-line subject, valid text)."""
        if value is None:
            return None
        checked = MessageFields.model_validate({info.field_name: value})
        return getattr(checked, info.field_name)


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: str = Field(min_length=1, max_length=MAX_REASON)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


def edit_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What an approver changed, for the audit log: old and new subject, recipients added and removed,
    a unified diff of each body."""
    changes: dict[str, Any] = {}
    if old["subject"] != new["subject"]:
        changes["subject"] = {"from": old["subject"], "to": new["subject"]}
    for name in ("to", "cc", "bcc"):
        added = [a for a in new[name] if a not in old[name]]
        removed = [a for a in old[name] if a not in new[name]]
        if added or removed:
            changes[name] = {"added": added, "removed": removed}
    for name in ("text", "html"):
        if (old[name] or "") != (new[name] or ""):
            lines = difflib.unified_diff((old[name] or "").splitlines(keepends=True),
                                         (new[name] or "").splitlines(keepends=True), "submitted", "approved")
            changes[name] = {"diff": "".join(lines)}
    return changes


def _pending_item(ctx: Context) -> tuple[Any, ApproveBody]:
    item = outbox_item(ctx)
    if item["submitted_by"] == ctx.key.id:
        raise Forbidden("A key cannot approve a message it submitted itself; another person's key must")
    if item["outbox_status"] != states.PENDING:
        raise not_waiting(item, "pending approval")
    return item, parse_body(ctx.request, ApproveBody)


def _decide_approval(ctx: Context, item: Any, after: str, detail: dict[str, Any], edits: dict[str, Any] | None,
                     columns: dict[str, Any]) -> Any:
    """Move the item from pending to `after`; the item as it is now (a 409 when another decision won)."""
    if not decide(ctx.services, item, (states.PENDING,), after, "message.approved", ctx.key.id, detail, edits,
                  **columns):
        raise not_waiting(ctx.services.outbox.get_item(ctx.org_id, item["id"]), "pending approval")
    return ctx.services.outbox.get_item(ctx.org_id, item["id"])


async def approve(ctx: Context) -> dict:
    """`POST /v1/messages/{id}/approve`, optionally with edits (checked like a send, kept as a diff in the
    audit log): it leaves now, or is scheduled when its `send_at` is still ahead."""
    item, body = await ctx.run(_pending_item, ctx)
    spec = json.loads(item["payload"])
    edited = {name: getattr(body, name) for name in EDITABLE if getattr(body, name) is not None}
    columns: dict[str, Any] = {"decided_by": ctx.key.id}
    edits = None
    if edited:
        new = {**spec, **edited}
        if not new["to"]:
            raise BadRequest("to: at least one recipient is required")
        if not (new["text"] or new["html"]):
            raise BadRequest("text or html: at least one body is required")
        if {"to", "cc", "bcc"} & edited.keys():
            checked = await ctx.services.validator.validate(ctx.org_id, recipients_of(new))
            if checked.rejected or checked.suppressed:
                raise BadRequest(nobody_left(checked.report(), "Refused recipients"),
                                 extra={"validation": checked.report()})
            columns["validation"] = json.dumps(checked.report())
            for name in ("to", "cc", "bcc"):
                new[name] = list(dict.fromkeys(normalise_address(a) or a for a in new[name]))
        edits = {"spec": new, "text_body": new["text"] if new["text"] is not None else html_to_text(new["html"])}
        columns["payload"] = json.dumps(new)
        detail = {"changes": edit_diff(spec, new)}
    else:
        detail = {}
    later = item["send_at"] and parse_iso(item["send_at"]).timestamp() > time.time()
    after = states.SCHEDULED if later else states.APPROVED
    columns["due_at"] = parse_iso(item["send_at"]).timestamp() if later else time.time() + RELEASE_GRACE
    decided = await ctx.run(_decide_approval, ctx, item, after, detail, edits, columns)
    if after == states.APPROVED:
        await release(ctx.services, [decided])
        decided = await ctx.run(ctx.services.outbox.get_item, ctx.org_id, item["id"])
    return data(item_json(decided))


@store_work
def reject(ctx: Context) -> dict:
    """`POST /v1/messages/{id}/reject` with a `reason`: the message never leaves."""
    item = outbox_item(ctx)
    if item["outbox_status"] != states.PENDING:
        raise not_waiting(item, "pending approval")
    body = parse_body(ctx.request, RejectBody)
    if not decide(ctx.services, item, (states.PENDING,), states.REJECTED, "message.rejected", ctx.key.id,
                  {"reason": body.reason}, reason=body.reason, decided_by=ctx.key.id, due_at=None):
        raise not_waiting(ctx.services.outbox.get_item(ctx.org_id, item["id"]), "pending approval")
    return data(item_json(ctx.services.outbox.get_item(ctx.org_id, item["id"])))


@store_work
def cancel(ctx: Context) -> dict:
    """`POST /v1/messages/{id}/cancel`: stop a scheduled or held message any time before it leaves."""
    item = outbox_item(ctx)
    if item["outbox_status"] not in states.WAITING or not decide(
            ctx.services, item, states.WAITING, states.CANCELLED, "message.cancelled", ctx.key.id, {},
            decided_by=ctx.key.id, due_at=None):
        raise not_waiting(ctx.services.outbox.get_item(ctx.org_id, item["id"]), "waiting to leave")
    return data(item_json(ctx.services.outbox.get_item(ctx.org_id, item["id"])))


ROUTES = [
    Route("POST", "/v1/drafts", create_draft, "drafts:write", "Create a draft", body_limit=SEND_BODY_LIMIT),
    Route("GET", "/v1/drafts", list_drafts, "drafts:read", "List drafts, newest first"),
    Route("GET", "/v1/drafts/{draft_id}", get_draft, "drafts:read", "A draft"),
    Route("PATCH", "/v1/drafts/{draft_id}", update_draft, "drafts:write", "Change a draft",
          body_limit=SEND_BODY_LIMIT),
    Route("DELETE", "/v1/drafts/{draft_id}", delete_draft, "drafts:write", "Delete a draft"),
    Route("POST", "/v1/drafts/{draft_id}/send", send_draft, "drafts:write",
          "Send a draft (also needs messages:write)"),
    Route("GET", "/v1/approvals", list_approvals, "messages:read", "Messages waiting for approval"),
    Route("GET", "/v1/outbox", list_outbox, "messages:read", "Held or scheduled messages by status"),
    Route("GET", "/v1/outbox/counts", outbox_counts, "messages:read", "Drafts, pending and scheduled counts"),
    Route("POST", "/v1/messages/{message_id}/approve", approve, "approvals:write",
          "Approve a held message (optionally edited)"),
    Route("POST", "/v1/messages/{message_id}/reject", reject, "approvals:write", "Reject a held message"),
    Route("POST", "/v1/messages/{message_id}/cancel", cancel, "messages:write",
          "Cancel a scheduled or held message"),
]
