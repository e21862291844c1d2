"""Delivery: the event log, suppressions (list, add, remove) and metrics over a period."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from ..delivery.validation import normalise_address
from ..http.errors import BadRequest, NotFound
from ..http.router import Route
from ..store.delivery import EVENT_TYPES, event_json, suppression_json
from ..util import iso, utcnow
from ._common import Context, data, int_arg, parse_body, store_work
from ._paging import by_insertion, decode_cursor, page
from .domains import visible_domain
from .inboxes import own_inbox
from .threads import mailbox_filter

_PERIOD = re.compile(r"^(\d{1,4})([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
MAX_PERIOD = timedelta(days=366)


class AddSuppression(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str = Field(max_length=320)
    reason: str = Field("manual", max_length=200)
    inbox_id: str | None = Field(None, validation_alias=AliasChoices("inbox_id", "inboxId"))
    domain_id: str | None = Field(None, validation_alias=AliasChoices("domain_id", "domainId"))

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        address = normalise_address(value)
        if address is None:
            raise ValueError("must be an email address")
        return address


def scope_filters(ctx: Context) -> dict[str, str | None]:
    """`inbox_id` / `domain_id` (or camelCase) filters, each checked to belong to the caller."""
    inbox_id, domain_id = mailbox_filter(ctx, required=False)
    return {"inbox_id": inbox_id, "domain_id": domain_id}


def newest_first_page(ctx: Context, name: str, filters: dict[str, str | None], fetch: Callable,
                      to_json: Callable) -> dict:
    """One keyset page of a newest-first list, with a cursor bound to its filters."""
    limit = int_arg(ctx.request, "limit", 50, 1, 500)
    scope = f"{name}:" + ":".join(v or "" for v in filters.values())
    after = decode_cursor(ctx.request.arg("cursor"), scope, "desc", int)
    rows = fetch(ctx.org_id, filters, limit + 1, after)
    rows, next_cursor, has_more = page(rows, limit, scope, "desc", by_insertion)
    return {"data": [to_json(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


@store_work
def list_events(ctx: Context) -> dict:
    filters = scope_filters(ctx)
    filters["message_id"] = ctx.request.arg("message_id", "messageId") or None
    event_type = ctx.request.arg("event_type", "eventType", "type") or None
    if event_type is not None and event_type not in EVENT_TYPES:
        raise BadRequest(f"event_type must be one of {', '.join(EVENT_TYPES)}")
    filters["event_type"] = event_type
    return newest_first_page(ctx, "events", filters, ctx.services.delivery.list_events, event_json)


@store_work
def list_suppressions(ctx: Context) -> dict:
    filters = scope_filters(ctx)
    email = ctx.request.arg("email")
    if email:
        address = normalise_address(email)
        if address is None:
            raise BadRequest("email must be an email address")
        # Suppressions apply to the whole organisation, so an address lookup ignores where it came from.
        filters = {"email": address}
    return newest_first_page(ctx, "suppressions", filters, ctx.services.delivery.list_suppressions,
                             suppression_json)


@store_work
def add_suppression(ctx: Context) -> tuple[int, dict]:
    body = parse_body(ctx.request, AddSuppression)
    if body.inbox_id is not None:
        own_inbox(ctx, body.inbox_id)
    if body.domain_id is not None:
        visible_domain(ctx, body.domain_id)
    suppression = ctx.services.delivery.add_suppression(
        ctx.org_id, body.email, body.reason, inbox_id=body.inbox_id, domain_id=body.domain_id
    )
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "suppression.added", "suppression", body.email,
                              {"reason": body.reason})
    return 201, data(suppression)


@store_work
def remove_suppression(ctx: Context) -> dict:
    address = normalise_address(ctx.params["email"])
    if address is None:
        raise BadRequest("email must be an email address")
    if not ctx.services.delivery.remove_suppression(ctx.org_id, address):
        raise NotFound("Suppression not found")
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "suppression.removed", "suppression", address, {})
    return data({"ok": True, "email": address})


def parse_period(value: str) -> timedelta:
    found = _PERIOD.match(value.strip().lower())
    if not found:
        raise BadRequest("period must look like 24h, 7d or 4w")
    span = timedelta(**{_UNITS[found[2]]: int(found[1])})
    if not timedelta(0) < span <= MAX_PERIOD:
        raise BadRequest("period must be between 1h and 366d")
    return span


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@store_work
def metrics(ctx: Context) -> dict:
    filters = scope_filters(ctx)
    period = ctx.request.arg("period") or "7d"
    since = iso(utcnow() - parse_period(period))
    counts = ctx.services.delivery.counts(ctx.org_id, since, filters["inbox_id"], filters["domain_id"])
    sent, delivered = counts.get("sent", 0), counts.get("delivered", 0)
    bounced, failed, complained = counts.get("bounced", 0), counts.get("failed", 0), counts.get("complained", 0)
    # Rates are fractions of the recipients whose delivery ended, so a backlog of retries does not skew them.
    ended = sent + delivered + bounced + failed
    body = {
        "sent": sent, "delivered": delivered, "bounced": bounced, "complained": complained, "failed": failed,
        "deferred": counts.get("deferred", 0), "queued": counts.get("queued", 0),
        "delivery_rate": _rate(sent + delivered, ended), "bounce_rate": _rate(bounced, ended),
        "complaint_rate": _rate(complained, ended), "period": period,
    }
    # The CLI (`doctor`, `context`) reads these figures at the top level; SDK-style clients unwrap `data`.
    return {**body, "data": body}


ROUTES = [
    Route("GET", "/v1/delivery/events", list_events, "delivery:read", "Delivery event log"),
    Route("GET", "/v1/delivery/suppressions", list_suppressions, "delivery:read", "Suppressed addresses"),
    Route("POST", "/v1/delivery/suppressions", add_suppression, "delivery:write", "Suppress an address"),
    Route("DELETE", "/v1/delivery/suppressions/{email}", remove_suppression, "delivery:write",
          "Stop suppressing an address"),
    Route("GET", "/v1/delivery/metrics", metrics, "delivery:read", "Delivery counts and rates over a period"),
]
