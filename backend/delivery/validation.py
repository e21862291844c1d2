"""Recipient validation for sends: syntax, mail exchangers (MX, else A/AAAA), disposable domains, suppressions.

Rejected and suppressed recipients are not sent to; warnings are reported but still sent. MX answers
are cached per domain for a while, so a burst of sends to one domain costs one lookup.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from email.utils import parseaddr

import dns.asyncresolver
import dns.exception
import dns.resolver
from disposable_email_domains import blocklist

from ..models.addressing import DOMAIN_RE, LOCAL_RE
from ..store.database import Database
from ..store.domains import DomainStore

POSITIVE_TTL = 600.0
NEGATIVE_TTL = 120.0
MAX_CACHED_DOMAINS = 10_000
NO_MX = "No MX records found"
NULL_MX = "Domain does not accept mail (null MX)"
BAD_SYNTAX = "Invalid email address"
NO_SUCH_INBOX = "No such inbox on this server"
UNAVAILABLE = {"disabled": "Mailbox disabled", "inactive": "Mailbox disabled",
               "paused": "Mailbox temporarily unavailable"}
"""Local inboxes that take no mail now, as SMTP answers for them (550 and 450)."""
DISPOSABLE = "Disposable email domain"
LOOKUP_FAILED = "MX lookup failed; delivery will be attempted"
_ADDRESS = re.compile(r"^(?P<local>[^@\s]{1,64})@(?P<domain>[^@\s]{1,253})$")


def normalise_address(value: str) -> str | None:
    """`local@domain` lower-cased (from a bare address or `Name <address>`), or None when it is not one."""
    if "<" in value:
        value = parseaddr(value)[1]
    found = _ADDRESS.match(value.strip())
    if not found or not LOCAL_RE.match(found["local"]):
        return None
    domain = found["domain"].lower().rstrip(".")
    if not DOMAIN_RE.match(domain):
        return None
    return f"{found['local'].lower()}@{domain}"


def is_disposable(domain: str) -> bool:
    """True for a listed disposable domain or any subdomain of one."""
    labels = domain.split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


@dataclass
class ValidationResult:
    """How each recipient fared; `report()` is the send response's `validation` block."""

    accepted: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)
    """The accepted addresses that are inboxes on this server (delivered without the network)."""
    rejected: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def noteworthy(self) -> bool:
        """True when the response must carry the `validation` block."""
        return bool(self.rejected or self.warnings or self.suppressed)

    def report(self) -> dict:
        """The send response's `validation` block."""
        return {"rejected": self.rejected, "warnings": self.warnings, "suppressed": self.suppressed,
                "duration_ms": self.duration_ms}


class MxCache:
    """Per-domain verdicts of `None` (mail is accepted), a rejection reason, or a warning."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        self._entries: dict[str, tuple[float, str | None]] = {}

    async def check(self, domain: str) -> tuple[str | None, str | None]:
        """(rejection, warning) for a domain; lookups that time out warn and are not cached."""
        cached = self._entries.get(domain)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], None
        try:
            reason = await self._lookup(domain)
        except dns.exception.DNSException:
            return None, LOOKUP_FAILED
        ttl = POSITIVE_TTL if reason is None else NEGATIVE_TTL
        if len(self._entries) >= MAX_CACHED_DOMAINS:
            self._evict()
        self._entries[domain] = (time.monotonic() + ttl, reason)
        return reason, None

    def _evict(self) -> None:
        """Drop expired verdicts, then the oldest half if that was not enough (memory stays bounded)."""
        now = time.monotonic()
        self._entries = {d: e for d, e in self._entries.items() if e[0] > now}
        if len(self._entries) >= MAX_CACHED_DOMAINS:
            keep = list(self._entries.items())[len(self._entries) // 2:]
            self._entries = dict(keep)

    async def _lookup(self, domain: str) -> str | None:
        try:
            answer = await self.resolver.resolve(domain, "MX")
            exchanges = [r for r in answer if str(r.exchange) not in (".", "")]
            return None if exchanges else NULL_MX
        except dns.resolver.NXDOMAIN:
            return NO_MX
        except dns.resolver.NoAnswer:
            pass
        # RFC 5321 §5.1: with no MX, the domain's own address is the implicit exchanger.
        for rtype in ("A", "AAAA"):
            try:
                await self.resolver.resolve(domain, rtype)
                return None
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
        return NO_MX


class RecipientValidator:
    """Validates a send's recipients; one per server, so the MX cache is shared by every request."""

    def __init__(self, database: Database, resolver: dns.asyncresolver.Resolver) -> None:
        self.database = database
        self.domains = DomainStore(database)
        self.mx = MxCache(resolver)

    async def validate(self, org_id: str, addresses: list[str]) -> ValidationResult:
        """Classify each distinct recipient; hosted addresses need an inbox here instead of DNS."""
        started = time.perf_counter()
        result = ValidationResult()
        clean: list[str] = []
        for raw in dict.fromkeys(addresses):
            address = normalise_address(raw)
            if address is None:
                result.rejected.append({"email": raw, "reason": BAD_SYNTAX})
            elif address not in clean:
                clean.append(address)
        suppressed, domains, hosted = await self.database.run(self._known_here, org_id, clean)
        remote = [d for d in domains if d not in hosted]
        verdicts = dict(zip(remote, await asyncio.gather(*(self.mx.check(d) for d in remote))))
        for address in clean:
            domain = address.split("@", 1)[1]
            if address in suppressed:
                result.suppressed.append(address)
            elif domain in hosted:
                if address not in hosted[domain]:
                    result.rejected.append({"email": address, "reason": NO_SUCH_INBOX})
                elif hosted[domain][address] in UNAVAILABLE:
                    result.rejected.append({"email": address, "reason": UNAVAILABLE[hosted[domain][address]]})
                else:
                    result.accepted.append(address)
                    result.local.append(address)
            else:
                rejection, warning = verdicts[domain]
                if rejection:
                    result.rejected.append({"email": address, "reason": rejection})
                    continue
                if warning:
                    result.warnings.append({"email": address, "reason": warning})
                if is_disposable(domain):
                    result.warnings.append({"email": address, "reason": DISPOSABLE})
                result.accepted.append(address)
        result.duration_ms = round((time.perf_counter() - started) * 1000)
        return result

    def _known_here(self, org_id: str, addresses: list[str]) -> tuple[set[str], list[str], dict]:
        """What the database says: the suppressed addresses, the recipient domains of the others, and
        which of those domains are hosted here (with their inboxes)."""
        suppressed = self._suppressed(org_id, addresses)
        domains = sorted({a.split("@", 1)[1] for a in addresses if a not in suppressed})
        return suppressed, domains, self._hosted(org_id, domains, addresses)

    def _suppressed(self, org_id: str, addresses: list[str]) -> set[str]:
        if not addresses:
            return set()
        marks = ",".join("?" * len(addresses))
        rows = self.database.query(
            f"SELECT email FROM suppressions WHERE org_id = ? AND email IN ({marks})", (org_id, *addresses)
        )
        return {row["email"] for row in rows}

    def _hosted(self, org_id: str, domains: list[str], addresses: list[str]) -> dict[str, dict[str, str | None]]:
        """Recipient domains that receive mail here for this sender, with their inboxes among `addresses`
        and each inbox's status.

        Unverified domains receive only what their own organisation sends them: an organisation could
        otherwise register someone else's domain here and capture mail other organisations send to it.
        """
        receiving = self.domains.receiving_domain_ids(domains, org_id)
        hosted: dict[str, dict[str, str | None]] = {name: {} for name in receiving}
        local = [a for a in addresses if a.split("@", 1)[1] in hosted]
        for address, status in self.domains.inbox_statuses(list(receiving.values()), local).items():
            hosted[address.split("@", 1)[1]][address] = status
        return hosted
