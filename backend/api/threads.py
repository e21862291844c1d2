"""Threads: the keyset-paged conversation list and a thread's messages (triage lives in `triage.py`)."""

from __future__ import annotations

import json
import sqlite3

from ..http.errors import BadRequest, NotFound
from ..http.response import Response, dumps
from ..http.router import Route
from ..models.mail import clean_labels, message_json, thread_json
from ..store.mail_reads import LabelFilter
from ._common import Context, data, int_arg, order_arg, store_work
from ._paging import decode_cursor, page
from .domains import visible_domain
from .inboxes import own_inbox


def mailbox_filter(ctx: Context, required: bool = True, check_inbox: bool = True) -> tuple[str | None, str | None]:
    """The `inbox_id` / `domain_id` query filters, each checked to be the caller's (else 404).

    `check_inbox=False` leaves the inbox check to the caller (a list filtered by organisation proves
    the inbox is the caller's when it returns a row; only an empty one needs the lookup)."""
    inbox_id = ctx.request.arg("inbox_id", "inboxId") or None
    domain_id = ctx.request.arg("domain_id", "domainId") or None
    if required and inbox_id is None and domain_id is None:
        raise BadRequest("inbox_id or domain_id is required")
    if inbox_id is not None and check_inbox:
        own_inbox(ctx, inbox_id)
    if domain_id is not None:
        visible_domain(ctx, domain_id)
    return inbox_id, domain_id


MAX_FILTER_LABELS = 10


def _labels_arg(ctx: Context, name: str, *aliases: str) -> tuple[str, ...]:
    values = [v for v in (ctx.request.arg(name, *aliases) or "").split(",") if v.strip()]
    if len(values) > MAX_FILTER_LABELS:
        raise BadRequest(f"{name}: at most {MAX_FILTER_LABELS} labels")
    try:
        return tuple(clean_labels(values))
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None


def label_filter(ctx: Context) -> LabelFilter:
    """`labels=a,b` (all of them) and `exclude_labels=c,d` (none of them); `trash` and `quarantine` are
    left out unless `labels` names them."""
    return LabelFilter(_labels_arg(ctx, "labels", "label"), _labels_arg(ctx, "exclude_labels", "excludeLabels"))


def own_thread(ctx: Context, thread_id: str) -> dict:
    """The caller's thread; anyone else's (or none) is a 404."""
    row = ctx.services.mail.get_thread(ctx.org_id, thread_id)
    if row is None:
        raise NotFound("Thread not found")
    return dict(row)


@store_work
def list_threads(ctx: Context) -> dict:
    """`GET /v1/threads`: by last activity, keyset-paged with an opaque cursor."""
    inbox_id, domain_id = mailbox_filter(ctx, check_inbox=False)
    limit = int_arg(ctx.request, "limit", 20, 1, 100)
    order = order_arg(ctx.request, "desc")
    labels = label_filter(ctx)
    scope = f"threads:{inbox_id or ''}:{domain_id or ''}" + (f":{labels.key}" if labels.include or labels.exclude else "")
    after = decode_cursor(ctx.request.arg("cursor"), scope, order, str)
    rows = ctx.services.mail.list_threads_json(ctx.org_id, inbox_id, domain_id, order, limit + 1, after,
                                               labels)
    if inbox_id is not None and not rows:
        # Rows prove the inbox is the caller's (the query filters by organisation); an empty page does not.
        own_inbox(ctx, inbox_id)
    rows, next_cursor, has_more = page(rows, limit, scope, order, lambda r: (r[0], r[1]))
    # The thread objects arrive as JSON text from SQLite; only the envelope is encoded here.
    items = ",".join(r[2] for r in rows).encode()
    return Response(b'{"data":[' + items + b'],"next_cursor":' + dumps(next_cursor)
                    + (b',"has_more":true}' if has_more else b',"has_more":false}'))


def _thread_messages(ctx: Context) -> tuple[list, dict]:
    thread = own_thread(ctx, ctx.params["thread_id"])
    limit = int_arg(ctx.request, "limit", 50, 1, 1000)
    order = order_arg(ctx.request, "asc")
    scope = f"thread:{thread['id']}"
    after = decode_cursor(ctx.request.arg("cursor"), scope, order, int)
    rows = ctx.services.mail.thread_messages(ctx.org_id, thread["id"], order, limit + 1, after)
    rows, next_cursor, has_more = page(rows, limit, scope, order, lambda r: (r["created_at"], r["seq"]))
    return rows, {"data": [message_json(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


async def thread_messages(ctx: Context) -> dict:
    """`GET /v1/threads/{id}/messages`: oldest first unless `order=desc`."""
    rows, result = await ctx.run(_thread_messages, ctx)
    await ctx.services.mail.extractions.attach(rows, result["data"])
    return result


def announce_deleted(ctx: Context, thread: dict) -> None:
    """Tell live clients a thread is gone (`thread.deleted`), or show it as it is now (`thread.updated`)."""
    row = ctx.services.mail.get_thread(ctx.org_id, thread["id"])
    if row is None:
        ctx.services.events.publish("thread.deleted", ctx.org_id, {"thread_id": thread["id"],
                                    "inbox_id": thread["inbox_id"]}, thread["inbox_id"], thread["domain_id"])
    else:
        ctx.services.events.publish("thread.updated", ctx.org_id, thread_json(row), row["inbox_id"],
                                    row["domain_id"])


@store_work
def delete_thread(ctx: Context) -> dict:
    """`DELETE /v1/threads/{id}`: the thread and its messages, for good; attachments and blob files no
    longer referenced go too. Audit-logged in the same transaction."""
    thread = own_thread(ctx, ctx.params["thread_id"])

    def audit(conn: sqlite3.Connection) -> None:
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "thread.deleted", "thread", thread["id"],
                                  {"inbox_id": thread["inbox_id"], "subject": thread["subject"][:200]}, conn=conn)

    counts = ctx.services.deletion.delete_messages(ctx.org_id, {"thread_ids": json.dumps([thread["id"]])}, audit)
    announce_deleted(ctx, thread)
    return data({"id": thread["id"], "deleted": True, "deleted_counts": {k: v for k, v in counts.items() if v}})


ROUTES = [
    Route("GET", "/v1/threads", list_threads, "threads:read", "List threads (keyset-paged)"),
    Route("GET", "/v1/threads/{thread_id}/messages", thread_messages, "threads:read", "A thread's messages"),
    Route("DELETE", "/v1/threads/{thread_id}", delete_thread, "messages:write",
          "Delete a thread and its messages permanently"),
]
