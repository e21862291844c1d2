"""Verify a domain's records by looking them up with dnspython."""

from __future__ import annotations

import asyncio

import dns.asyncresolver
import dns.exception
import dns.resolver


def _norm(host: str) -> str:
    return host.rstrip(".").lower()


async def check_record(resolver: dns.asyncresolver.Resolver, record: dict) -> str:
    """`verified` when the expected value is published, `failed` when something else is, else `pending`."""
    try:
        answer = await resolver.resolve(record["name"], record["type"])
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return "pending"
    except dns.exception.DNSException:
        return "pending"
    if record["type"] == "MX":
        found = {_norm(r.exchange.to_text()) for r in answer}
        return "verified" if _norm(record["value"]) in found else "failed"
    if record["type"] == "TXT":
        found_txt = {b"".join(r.strings).decode("utf-8", "replace").strip() for r in answer}
        expected = record["value"].strip()
        if expected in found_txt:
            return "verified"
        if record["record"] == "DKIM":
            compact = expected.replace(" ", "")
            if any(t.replace(" ", "") == compact for t in found_txt):
                return "verified"
        return "failed"
    return "failed"


async def verify_records(resolver: dns.asyncresolver.Resolver, records: list[dict]) -> tuple[str, list[dict]]:
    """Check every record; the domain is verified when all are, failed when any is wrong."""
    statuses = await asyncio.gather(*(check_record(resolver, record) for record in records))
    checked = [{**record, "status": status} for record, status in zip(records, statuses, strict=True)]
    found = set(statuses)
    if found == {"verified"}:
        return "verified", checked
    if "failed" in found:
        return "failed", checked
    return "pending", checked
