"""Verify a domain's records by looking them up with dnspython."""

from __future__ import annotations

import asyncio

import dns.asyncresolver
import dns.exception
import dns.resolver

from .records import OPTIONAL_RECORDS


def _norm(host: str) -> str:
    return host.rstrip(".").lower()


def _dmarc_tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        tags[key.strip().lower()] = value.strip()
    return tags


def _rua(text: str) -> set[str]:
    """The report addresses of a DMARC record's `rua` tag, without `mailto:` and size limits (`!10m`)."""
    found = set()
    for uri in _dmarc_tags(text).get("rua", "").split(","):
        uri = uri.strip().lower()
        if uri.startswith("mailto:"):
            found.add(uri.removeprefix("mailto:").split("!", 1)[0])
    return found


def dmarc_status(published: set[str], expected: str) -> str:
    """`verified` when a published DMARC policy sends aggregate reports to our address, whatever its `p`."""
    policies = [t for t in published if _dmarc_tags(t).get("v", "").upper() == "DMARC1"]
    if not policies:
        return "pending"
    wanted = _rua(expected)
    return "verified" if any(wanted <= _rua(policy) for policy in policies) else "failed"


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
        if record["record"] == "DMARC":
            return dmarc_status(found_txt, record["value"])
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
    """Check every record; the domain is verified when all required ones are, failed when any is wrong.

    Optional records (DMARC) get their own status but never hold verification back.
    """
    statuses = await asyncio.gather(*(check_record(resolver, record) for record in records))
    checked = [{**record, "status": status} for record, status in zip(records, statuses, strict=True)]
    found = {r["status"] for r in checked if r["record"] not in OPTIONAL_RECORDS}
    if found == {"verified"}:
        return "verified", checked
    if "failed" in found:
        return "failed", checked
    return "pending", checked
