"""Contacts: the addresses this organisation exchanged mail with, for recipient completion."""

from __future__ import annotations

from ..http.errors import BadRequest
from ..http.router import Route
from ._common import Context, int_arg, store_work
from ._paging import decode_cursor, page

MAX_QUERY = 200


@store_work
def list_contacts(ctx: Context) -> dict:
    """`GET /v1/contacts?q=`: addresses (with the name they last gave) most recently exchanged with first;
    `q` keeps those whose address or name contains it (any case)."""
    text = (ctx.request.arg("q", "query") or "").strip().replace("\0", "")
    if len(text) > MAX_QUERY:
        raise BadRequest(f"q must be at most {MAX_QUERY} characters")
    limit = int_arg(ctx.request, "limit", 20, 1, 100)
    scope = f"contacts:{text}"
    after = decode_cursor(ctx.request.arg("cursor"), scope, "desc", str)
    rows = ctx.services.mail.list_contacts(ctx.org_id, text, limit + 1, after)
    rows, next_cursor, has_more = page(rows, limit, scope, "desc", lambda r: (r["last_at"], r["address"]))
    return {"data": [{"address": r["address"], "name": r["name"], "last_at": r["last_at"],
                      "message_count": r["messages"]} for r in rows],
            "next_cursor": next_cursor, "has_more": has_more}


ROUTES = [
    Route("GET", "/v1/contacts", list_contacts, "messages:read", "Addresses this organisation exchanged mail with"),
]
