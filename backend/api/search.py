"""Full-text search over subjects, bodies and senders, answered as threads (CONTRACT.md §3.6, S1)."""

from __future__ import annotations

from ..http.errors import BadRequest
from ..http.router import Route
from ..models.mail import search_result_json
from ._common import Context, data, int_arg
from .threads import mailbox_filter

MAX_QUERY = 500


async def search_threads(ctx: Context) -> dict:
    """`GET /v1/search/threads`: threads whose messages match every word of `q`, newest match first."""
    text = (ctx.request.arg("q", "query") or "").strip()
    if not text:
        raise BadRequest("q is required: the words to search for")
    if len(text) > MAX_QUERY:
        raise BadRequest(f"q must be at most {MAX_QUERY} characters")
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    limit = int_arg(ctx.request, "limit", 20, 1, 100)
    rows = ctx.services.mail.search_threads(ctx.org_id, text, inbox_id, domain_id, limit)
    return data([search_result_json(r) for r in rows])


ROUTES = [
    Route("GET", "/v1/search/threads", search_threads, "threads:read", "Search threads"),
]
