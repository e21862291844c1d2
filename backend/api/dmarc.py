"""DMARC aggregate reports of the organisation's domains: list, one report with its records, summary.

Shapes follow what `commune-cli dmarc reports|summary` prints: report rows with `id`, `reporterOrg`,
`dateRangeBegin`, `dateRangeEnd`, `recordCount`; the summary as one flat object of figures. They need
`domains:read` (reports are facts about a domain's mail, as its DNS records are).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from ..http.errors import BadRequest, NotFound
from ..http.router import Route
from ..util import iso, utcnow
from ._common import Context, data, int_arg, store_work
from ._paging import decode_cursor, page


def own_domain(ctx: Context) -> dict:
    """The organisation's domain named by `domain` (a name or an id); 404 for anyone else's."""
    ref = (ctx.request.arg("domain", "domain_id", "domainId") or "").strip()
    if not ref:
        raise BadRequest("domain is required (a domain name or id)")
    try:
        uuid.UUID(ref)
    except ValueError:
        domain = ctx.services.domains.own_domain_by_name(ctx.org_id, ref.rstrip("."))
    else:
        domain = ctx.services.domains.get_domain(ctx.org_id, ref)
    if domain is None or domain["org_id"] != ctx.org_id:
        raise NotFound("Domain not found")
    return domain


def report_json(row: dict, domain: dict) -> dict[str, Any]:
    """One report as the CLI lists it; `status` is `pending`, `parsed`, `failed` or `duplicate`."""
    return {
        "id": row["id"],
        "domain": domain["name"],
        "domain_id": row["domain_id"],
        "inbox_id": row["inbox_id"],
        "message_id": row["message_id"],
        "status": row["status"],
        "error": row["error"],
        "reporterOrg": row["reporter_org"],
        "reporterEmail": row["reporter_email"],
        "reportId": row["report_id"],
        "dateRangeBegin": row["date_begin"],
        "dateRangeEnd": row["date_end"],
        "policy": row["policy"],
        "recordCount": row["record_count"],
        "messageCount": row["message_count"],
        "passCount": row["pass_count"],
        "failCount": row["fail_count"],
        "receivedAt": row["received_at"],
        "processedAt": row["processed_at"],
    }


def record_json(row: dict) -> dict[str, Any]:
    return {
        "sourceIp": row["source_ip"],
        "count": row["count"],
        "disposition": row["disposition"],
        "dkim": row["dkim"],
        "spf": row["spf"],
        "dmarc": "pass" if row["passed"] else "fail",
        "headerFrom": row["header_from"],
        "envelopeFrom": row["envelope_from"],
        "envelopeTo": row["envelope_to"],
        "reasons": row["reasons"],
        "authResults": row["auth_results"],
    }


@store_work
def list_reports(ctx: Context) -> dict:
    domain = own_domain(ctx)
    limit = int_arg(ctx.request, "limit", 50, 1, 200)
    after = decode_cursor(ctx.request.arg("cursor"), domain["id"], "desc", int)
    rows = ctx.services.dmarc.list_reports(ctx.org_id, domain["id"], limit, after[1] if after else None)
    rows, next_cursor, has_more = page(rows, limit, domain["id"], "desc", lambda r: (r["received_at"], r["seq"]))
    return {**data([report_json(r, domain) for r in rows]), "has_more": has_more, "next_cursor": next_cursor}


@store_work
def get_report(ctx: Context) -> dict:
    row = ctx.services.dmarc.get_report(ctx.org_id, ctx.params["report_id"])
    domain = ctx.services.domains.get_domain(ctx.org_id, row["domain_id"]) if row else None
    if row is None or domain is None:
        raise NotFound("DMARC report not found")
    records = [record_json(r) for r in ctx.services.dmarc.records(row["seq"])]
    return data({**report_json(row, domain), "records": records})


@store_work
def summary(ctx: Context) -> dict[str, Any]:
    domain = own_domain(ctx)
    days = int_arg(ctx.request, "days", 30, 1, 366)
    since = iso(utcnow() - timedelta(days=days))
    figures = ctx.services.dmarc.summary(ctx.org_id, domain["id"], since)
    total, passed = figures["messages"], figures["passed"]
    reports = figures["reports"]
    return {
        "domain": domain["name"],
        "domain_id": domain["id"],
        "days": days,
        "since": since,
        "reports": reports.get("parsed", 0),
        "failedReports": reports.get("failed", 0),
        "pendingReports": reports.get("pending", 0),
        "totalMessages": total,
        "passed": passed,
        "failed": total - passed,
        # A fraction 0–1 of the messages reporters saw; null while no report covers the period.
        "passRate": round(passed / total, 4) if total else None,
        "dkimPassed": figures["dkim_passed"],
        "spfPassed": figures["spf_passed"],
        "quarantined": figures["dispositions"].get("quarantine", 0),
        "rejected": figures["dispositions"].get("reject", 0),
        "topFailingSources": [{"sourceIp": r["source_ip"], "count": r["n"], "reports": r["reports"]}
                              for r in figures["top_failing"]],
    }


ROUTES = [
    Route("GET", "/v1/dmarc/reports", list_reports, "domains:read", "List a domain's DMARC aggregate reports"),
    Route("GET", "/v1/dmarc/reports/{report_id}", get_report, "domains:read",
          "Get a DMARC aggregate report with its records"),
    Route("GET", "/v1/dmarc/summary", summary, "domains:read", "DMARC pass/fail figures of a domain"),
]
