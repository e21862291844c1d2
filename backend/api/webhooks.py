"""Webhook delivery log: list, inspect, retry, and the organisation's delivery health (CONTRACT.md W1–W4)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ..http.errors import BadRequest, NotFound
from ..http.router import Route
from ..store.webhooks import STATUSES
from ..util import iso, utcnow
from ._common import Context, data, int_arg, store_work
from ._paging import by_insertion, decode_cursor, page
from .inboxes import own_inbox

PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
           "90d": timedelta(days=90)}


def _when(epoch: float | None) -> str | None:
    return iso(datetime.fromtimestamp(epoch, UTC)) if epoch is not None else None


def delivery_json(row: dict) -> dict[str, Any]:
    """One delivery as the CLI lists it (camelCase columns), with snake_case ids beside them."""
    return {
        "id": row["id"],
        "status": row["status"],
        "event": row["event"],
        "endpoint": row["endpoint"],
        "inbox_id": row["inbox_id"],
        "message_id": row["message_id"],
        "httpStatus": row["http_status"],
        "attemptCount": row["attempts"],
        "lastError": row["last_error"],
        "latencyMs": row["latency_ms"],
        "nextAttemptAt": _when(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "deliveredAt": row["delivered_at"],
    }


def delivery_detail(row: dict) -> dict[str, Any]:
    """A delivery with every attempt and the exact payload it sends."""
    return {**delivery_json(row), "attempts": row["attempt_log"], "payload": json.loads(row["payload"])}


def _own(ctx: Context) -> dict:
    found = ctx.services.webhooks.get(ctx.org_id, ctx.params["delivery_id"])
    if found is None:
        raise NotFound("Webhook delivery not found")
    return found


@store_work
def list_deliveries(ctx: Context) -> dict:
    request = ctx.request
    inbox_id = request.arg("inbox_id", "inboxId") or None
    status = request.arg("status") or None
    endpoint = request.arg("endpoint") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    if inbox_id is not None:
        own_inbox(ctx, inbox_id)
    limit = int_arg(request, "limit", 50, 1, 200)
    scope = json.dumps([inbox_id, status, endpoint])
    after = decode_cursor(request.arg("cursor"), scope, "desc", int)
    rows = ctx.services.webhooks.list(ctx.org_id, limit, after, inbox_id, status, endpoint)
    rows, next_cursor, has_more = page(rows, limit, scope, "desc", by_insertion)
    return {**data([delivery_json(r) for r in rows]), "has_more": has_more, "next_cursor": next_cursor}


@store_work
def get_delivery(ctx: Context) -> dict:
    return data(delivery_detail(_own(ctx)))


@store_work
def retry_delivery(ctx: Context) -> dict:
    row = _own(ctx)
    if row["status"] == "pending":
        return data(delivery_detail(row))
    retried = ctx.services.webhooks.retry(ctx.org_id, row["id"], time.time())
    if retried is None:
        raise NotFound("Webhook delivery not found")
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "webhook.retried", "webhook_delivery", row["id"])
    return data(delivery_detail(retried))


@store_work
def health(ctx: Context) -> dict:
    period = ctx.request.arg("period") or "7d"
    if period not in PERIODS:
        raise BadRequest(f"period must be one of {', '.join(PERIODS)}")
    stats = ctx.services.webhooks.health(ctx.org_id, iso(utcnow() - PERIODS[period]))
    counts = stats["counts"]
    finished = counts["success"] + counts["failed"]
    # A fraction 0–1 (the CLI doctor fails below 0.9); null while nothing has finished yet.
    rate = round(counts["success"] / finished, 4) if finished else None
    latency = round(stats["average_latency_ms"], 1) if stats["average_latency_ms"] is not None else None
    return {
        "period": period,
        "total": sum(counts.values()),
        "success": counts["success"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "attempts": stats["attempts"],
        "success_rate": rate,
        "successRate": rate,
        "average_latency_ms": latency,
        "avgLatencyMs": latency,
    }


ROUTES = [
    Route("GET", "/v1/webhooks/deliveries", list_deliveries, "webhooks:read", "List webhook deliveries"),
    Route("GET", "/v1/webhooks/deliveries/{delivery_id}", get_delivery, "webhooks:read",
          "Get a webhook delivery with its attempts"),
    Route("POST", "/v1/webhooks/deliveries/{delivery_id}/retry", retry_delivery, "webhooks:write",
          "Retry a webhook delivery now"),
    Route("GET", "/v1/webhooks/health", health, "webhooks:read", "Webhook delivery health"),
]
