"""The audit log of an organisation: security-relevant actions, newest first, for admins."""

from __future__ import annotations

from ..http.errors import BadRequest
from ..http.router import Route
from ._common import Context, int_arg, store_work
from ._paging import by_insertion, decode_cursor, page


@store_work
def list_audit_logs(ctx: Context) -> dict:
    action = ctx.request.arg("action") or None
    if action is not None and len(action) > 100:
        raise BadRequest("action must be at most 100 characters")
    limit = int_arg(ctx.request, "limit", 50, 1, 200)
    scope = f"audit:{action or ''}"
    after = decode_cursor(ctx.request.arg("cursor"), scope, "desc", int)
    rows = ctx.services.audit.list_entries(ctx.org_id, action, after, limit + 1)
    entries, next_cursor, has_more = page(rows, limit, scope, "desc", by_insertion)
    return {
        "data": [{key: value for key, value in entry.items() if key not in ("org_id", "rowid")} for entry in entries],
        "has_more": has_more,
        "next_cursor": next_cursor,
    }


ROUTES = [
    Route("GET", "/v1/audit-logs", list_audit_logs, "admin", "List the organization's audit log"),
]
