"""Messages: list with filters, and send (`POST /v1/messages/send`)."""

from __future__ import annotations

from ..http.errors import BadRequest
from ..http.router import Route
from ..models.mail import message_json
from ..util import iso, parse_iso
from ._common import Context, int_arg, order_arg
from ._paging import decode_cursor, page
from .threads import mailbox_filter


def date_arg(ctx: Context, name: str) -> str | None:
    """An ISO 8601 date query parameter in the stored timestamp format; a bad date is a 400."""
    raw = ctx.request.arg(name)
    if raw is None or raw == "":
        return None
    try:
        return iso(parse_iso(raw))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date, e.g. 2025-03-15T08:26:31Z") from None


async def list_messages(ctx: Context) -> dict:
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    sender = (ctx.request.arg("sender") or "").strip().lower() or None
    if inbox_id is None and domain_id is None and sender is None:
        raise BadRequest("inbox_id, domain_id or sender is required")
    limit = int_arg(ctx.request, "limit", 50, 1, 1000)
    order = order_arg(ctx.request, "desc")
    before, since = date_arg(ctx, "before"), date_arg(ctx, "after")
    scope = f"messages:{inbox_id}:{domain_id}:{sender}:{before}:{since}"
    after = decode_cursor(ctx.request.arg("cursor"), scope, order, int)
    rows = ctx.services.mail.list_messages(
        ctx.org_id, inbox_id=inbox_id, domain_id=domain_id, sender=sender, before=before, since=since,
        order=order, limit=limit + 1, after=after,
    )
    rows, next_cursor, has_more = page(rows, limit, scope, order, lambda r: (r["created_at"], r["seq"]))
    return {"data": [message_json(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


ROUTES = [
    Route("GET", "/v1/messages", list_messages, "messages:read", "List messages"),
]
