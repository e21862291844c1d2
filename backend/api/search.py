"""Search over subjects, bodies, senders and attachment file names, answered as threads (CONTRACT.md §3.6,
S1), in Mailpit's query language (`store/search.py`), keyset-paged with a total."""

from __future__ import annotations

import hashlib

from ..http.errors import BadRequest
from ..http.router import Route
from ..models.mail import search_result_json
from ..store.search import SearchSyntaxError
from ._common import Context, int_arg, store_work
from ._paging import decode_cursor, page
from .threads import label_filter, mailbox_filter

MAX_QUERY = 500


@store_work
def search_threads(ctx: Context) -> dict:
    """`GET /v1/search/threads`: threads with a message matching every term of `q`, newest match first."""
    text = (ctx.request.arg("q", "query") or "").strip()
    if not text:
        raise BadRequest("q is required: the words to search for")
    if len(text) > MAX_QUERY:
        raise BadRequest(f"q must be at most {MAX_QUERY} characters")
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    limit = int_arg(ctx.request, "limit", 20, 1, 100)
    labels = label_filter(ctx)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    scope = f"search:{digest}:{inbox_id or ''}:{domain_id or ''}:{labels.key}"
    after = decode_cursor(ctx.request.arg("cursor"), scope, "desc", int)
    try:
        rows, total, exact = ctx.services.mail.search_threads(ctx.org_id, text, inbox_id, domain_id, limit + 1,
                                                              labels, after[1] if after else None)
    except SearchSyntaxError as exc:
        raise BadRequest(str(exc)) from None
    rows, next_cursor, has_more = page(rows, limit, scope, "desc", lambda r: r["_key"])
    return {"data": [search_result_json(r) for r in rows], "total": total, "total_exact": exact,
            "next_cursor": next_cursor, "has_more": has_more}


ROUTES = [
    Route("GET", "/v1/search/threads", search_threads, "threads:read", "Search threads"),
]
