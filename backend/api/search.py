"""Full-text search over subjects, bodies and senders, answered as threads (CONTRACT.md §3.6, S1)."""

from __future__ import annotations

from ..http.errors import BadRequest
from ..http.router import Route
from ..models.mail import search_result_json
from ._common import Context, data, int_arg
from .threads import label_filter, mailbox_filter

MAX_QUERY = 500
AUTH_FAIL = "auth:fail"
"""The search operator for messages whose SPF, DKIM or DMARC result is `fail` (softfail is not a fail)."""


def split_operators(text: str) -> tuple[str, bool]:
    """The words to search for, and whether `auth:fail` was among them; another `auth:` value is a 400."""
    words, auth_failed = [], False
    for word in text.split():
        if word.lower().startswith("auth:"):
            if word.lower() != AUTH_FAIL:
                raise BadRequest(f"q: unknown operator '{word[:40]}'; {AUTH_FAIL} is the authentication filter")
            auth_failed = True
        else:
            words.append(word)
    return " ".join(words), auth_failed


async def search_threads(ctx: Context) -> dict:
    """`GET /v1/search/threads`: threads whose messages match every word of `q`, newest match first."""
    text = (ctx.request.arg("q", "query") or "").strip()
    if not text:
        raise BadRequest("q is required: the words to search for")
    if len(text) > MAX_QUERY:
        raise BadRequest(f"q must be at most {MAX_QUERY} characters")
    words, auth_failed = split_operators(text)
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    limit = int_arg(ctx.request, "limit", 20, 1, 100)
    rows = ctx.services.mail.search_threads(ctx.org_id, words, inbox_id, domain_id, limit, auth_failed,
                                            label_filter(ctx))
    return data([search_result_json(r) for r in rows])


ROUTES = [
    Route("GET", "/v1/search/threads", search_threads, "threads:read", "Search threads"),
]
