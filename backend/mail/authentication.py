"""Inbound mail authentication: SPF (pyspf), DKIM (dkimpy) and DMARC, over the server's DNS resolvers.

`Authenticator.check` is synchronous and blocks on DNS, so the SMTP listener runs it in its own
worker threads (never on the event loop, never in the pool that parses mail). Lookups go through
`AuthDns`, which asks the configured `--dns-servers` and keeps answers for a short while: mail from
a domain that publishes nothing costs a few cache hits after its first message, not a DNS round trip.

DMARC (RFC 7489) is evaluated here: the record of the From domain, else of its organisational domain
(the registrable domain under the Public Suffix List, via `publicsuffixlist`), and identifier
alignment of the SPF-checked domain and of each passing DKIM signature's `d=`, relaxed (same
organisational domain) or strict (same name) as the record asks. `pct` below 100 is not sampled:
such a `reject` policy is treated as `quarantine` (RFC 7489 §6.6.4's next lower policy), erring
towards delivering mail.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

import dkim
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

log = logging.getLogger("commune.auth")

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
POLICIES = ("none", "quarantine", "reject")
# How long answers are kept: positive ones for their TTL up to this, "no such record" briefly
# (RFC 2308 would read the SOA; a fixed minute is enough to make a burst of mail from one
# domain cost one lookup), and a timeout for less, so a DNS blip does not stall every message.
MAX_TTL = 300.0
NEGATIVE_TTL = 60.0
TEMPERROR_TTL = 15.0
CACHE_ENTRIES = 20_000
SPF_TOTAL_SECONDS = 10.0
"""Budget for one SPF evaluation with every include and redirect (RFC 7208 §4.6.4 suggests 20 s)."""
MAX_SIGNATURES = 8
"""DKIM signatures verified per message; a message carrying more is hostile, not mail."""
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?")
_PSL: PublicSuffixList | None = None
_PSL_LOCK = threading.Lock()


class TemporaryDnsError(Exception):
    """The resolvers did not answer (timeout, SERVFAIL): the result is `temperror`."""


class NotCached(Exception):
    """A check with `cached_only` needed an answer the cache does not hold."""


def organisational_domain(domain: str) -> str:
    """The registrable domain under the Public Suffix List (`mail.example.co.uk` → `example.co.uk`);
    a name that is itself a public suffix (or unknown to the list's rules) stands for itself."""
    global _PSL
    if _PSL is None:
        with _PSL_LOCK:
            if _PSL is None:
                _PSL = PublicSuffixList()
    return _PSL.privatesuffix(domain) or domain


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """DMARC identifier alignment: `s`trict needs the same name, `r`elaxed the same organisational domain."""
    if domain == from_domain:
        return True
    return mode != "s" and organisational_domain(domain) == organisational_domain(from_domain)


def clean_domain(value: str | bytes | None) -> str | None:
    """A domain from a header or the envelope, lower-cased and in ASCII, or None when it is not one."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = text.strip().rstrip(".").lower()
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return text


class AuthDns:
    """Blocking lookups on the configured resolvers, with a small shared cache (thread-safe)."""

    def __init__(self, nameservers: list[str], port: int, timeout: float) -> None:
        self.resolver = dns.resolver.Resolver(configure=False)
        self.resolver.nameservers = list(nameservers)
        self.resolver.port = port
        self.resolver.timeout = self.resolver.lifetime = timeout
        self.cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self.lock = threading.Lock()

    def query(self, name: str, rtype: str) -> tuple[Any, ...]:
        """The rdatas of `name`/`rtype` (empty when there are none); raises TemporaryDnsError."""
        key = (name.lower().rstrip("."), rtype)
        now = time.monotonic()
        with self.lock:
            found = self.cache.get(key)
        if found is not None and found[0] > now:
            if isinstance(found[1], TemporaryDnsError):
                raise found[1]
            return found[1]
        if getattr(_current, "cached_only", False):
            raise NotCached(key[0])
        try:
            answer = self.resolver.resolve(key[0], rtype, search=False)
            value: Any = tuple(answer)
            ttl = min(float(answer.rrset.ttl if answer.rrset is not None else 0), MAX_TTL)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.name.NameTooLong, dns.name.EmptyLabel,
                dns.name.LabelTooLong):
            value, ttl = (), NEGATIVE_TTL
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
            value, ttl = TemporaryDnsError(f"{key[0]} {rtype}: {type(exc).__name__}"), TEMPERROR_TTL
        except dns.exception.DNSException as exc:
            value, ttl = TemporaryDnsError(f"{key[0]} {rtype}: {exc}"), TEMPERROR_TTL
        self._remember(key, now + ttl, value)
        if isinstance(value, TemporaryDnsError):
            raise value
        return value

    def txt(self, name: str) -> list[bytes]:
        """Each TXT record of `name` with its strings joined (RFC 7208 §3.3)."""
        return [b"".join(rdata.strings) for rdata in self.query(name, "TXT")]

    def _remember(self, key: tuple[str, str], expires: float, value: Any) -> None:
        with self.lock:
            if len(self.cache) >= CACHE_ENTRIES:
                now = time.monotonic()
                for stale in [k for k, (until, _) in self.cache.items() if until <= now]:
                    del self.cache[stale]
                while len(self.cache) >= CACHE_ENTRIES:
                    del self.cache[next(iter(self.cache))]
            self.cache[key] = (expires, value)

    # pyspf asks through its module-level `DNSLookup`; `_pyspf_lookup` routes the call here.
    def pyspf_answers(self, name: str, qtype: str) -> list[tuple[tuple[str, str], Any]]:
        """Answers in the shape pyspf's own dnspython lookup returns."""
        try:
            rdatas = self.query(name, qtype)
        except TemporaryDnsError as exc:
            raise spf.TempError(f"DNS {exc}") from None
        answers: list[tuple[tuple[str, str], Any]] = []
        for rdata in rdatas:
            if qtype in ("A", "AAAA"):
                answers.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                answers.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                answers.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                answers.append(((name, qtype), rdata.strings))
        return answers


_current = threading.local()
_pyspf_default = spf.DNSLookup


def _pyspf_lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list:
    """pyspf's one DNS entry point, answered by the `AuthDns` of the check running in this thread."""
    resolver: AuthDns | None = getattr(_current, "dns", None)
    if resolver is None:
        return _pyspf_default(name, qtype, strict, timeout)
    return resolver.pyspf_answers(name, qtype)


spf.DNSLookup = _pyspf_lookup


@dataclass
class Signature:
    domain: str | None
    selector: str | None
    result: str


@dataclass
class Authentication:
    """What the checks found for one message."""

    spf: str = "none"
    spf_domain: str | None = None
    spf_scope: str = "mailfrom"
    dkim: str = "none"
    signatures: list[Signature] = field(default_factory=list)
    dmarc: str = "none"
    from_domain: str | None = None
    policy: str | None = None
    """The DMARC disposition the From domain asks for on failure (`none|quarantine|reject`), when it has a record."""

    def as_json(self) -> dict[str, str | None]:
        """The `authentication` object of a message."""
        return {"spf": self.spf, "dkim": self.dkim, "dmarc": self.dmarc, "from_domain": self.from_domain}

    @property
    def failed(self) -> bool:
        """Any of SPF, DKIM or DMARC is a hard `fail` (what `auth:fail` finds)."""
        return "fail" in (self.spf, self.dkim, self.dmarc)

    def header(self, authserv_id: str) -> bytes:
        """An `Authentication-Results` header (RFC 8601) naming what was checked, CRLF-terminated."""
        server = clean_domain(authserv_id) or "localhost"
        spf_part = f"spf={self.spf}"
        if self.spf_domain:
            spf_part += f" smtp.{'helo' if self.spf_scope == 'helo' else 'mailfrom'}={self.spf_domain}"
        parts = [spf_part]
        for sig in self.signatures or [Signature(None, None, self.dkim)]:
            part = f"dkim={sig.result}"
            if sig.domain:
                part += f" header.d={sig.domain}"
            if sig.selector:
                part += f" header.s={sig.selector}"
            parts.append(part)
        dmarc_part = f"dmarc={self.dmarc}"
        if self.policy:
            dmarc_part += f" (p={self.policy})"
        if self.from_domain:
            dmarc_part += f" header.from={self.from_domain}"
        parts.append(dmarc_part)
        return ("Authentication-Results: " + server + ";\r\n\t" + ";\r\n\t".join(parts) + "\r\n").encode()


@dataclass
class DmarcRecord:
    policy: str
    adkim: str = "r"
    aspf: str = "r"


def parse_dmarc(text: str, organisational: bool) -> DmarcRecord | None:
    """A DMARC TXT record's tags (RFC 7489 §6.3); None when it is not a DMARC record."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v", "").upper() != "DMARC1" or not text.lstrip().lower().startswith("v"):
        return None
    policy = tags.get("p", "").lower()
    if organisational and tags.get("sp", "").lower() in POLICIES:
        policy = tags["sp"].lower()
    if policy not in POLICIES:
        policy = "none"  # RFC 7489 §6.6.3: a record with a bad or missing p= still reports, as p=none
    try:
        percent = int(tags.get("pct", "100"))
    except ValueError:
        percent = 100
    if policy == "reject" and percent < 100:
        policy = "quarantine"
    return DmarcRecord(policy, tags.get("adkim", "r").lower()[:1], tags.get("aspf", "r").lower()[:1])


def header_block(raw: bytes) -> bytes:
    """The message's header section (up to the first empty line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = raw.find(separator)
        if end >= 0:
            return raw[: end + len(separator) // 2]
    return raw


_FROM_FIELD = re.compile(rb"^from[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_PLAIN_FROM = re.compile(r"\s*(?:[^<>@,;:\"()\\]*<)?[^\s<>@,;:\"()\\]+@([A-Za-z0-9.-]+)>?\s*")


def from_domains(headers: bytes) -> list[str | None]:
    """The domain of each address in the From field(s); None for one that is not a usable domain."""
    values = [m.group(1).decode("utf-8", "surrogateescape") for m in _FROM_FIELD.finditer(headers)]
    if len(values) == 1 and (plain := _PLAIN_FROM.fullmatch(values[0])):
        return [clean_domain(plain.group(1))]  # `Name <a@b>` or `a@b`: most mail, without the full parser
    return [clean_domain(address.rpartition("@")[2]) if "@" in address else None
            for _, address in getaddresses(values)]


def without_own_results(raw: bytes, authserv_id: str) -> bytes:
    """`raw` without Authentication-Results headers that claim to come from us (RFC 8601 §5)."""
    headers = header_block(raw)
    if b"authentication-results" not in headers.lower():
        return raw
    own = re.compile(rb"authentication-results\s*:\s*" + re.escape(authserv_id.encode()) + rb"\s*(;|\r?\n)",
                     re.IGNORECASE)
    kept: list[bytes] = []
    dropping = False
    for line in headers.splitlines(keepends=True):
        if line[:1] not in (b" ", b"\t"):  # a new field; folded lines belong to the one before
            dropping = bool(own.match(line))
        if not dropping:
            kept.append(line)
    return b"".join(kept) + raw[len(headers):]


def disposition(result: Authentication, setting: str | None) -> str:
    """What an inbox with `reject_unauthenticated = setting` does with the message: `deliver`,
    `quarantine` (any DMARC failure) or `reject` (a DMARC failure whose domain asks for reject)."""
    if result.dmarc != "fail" or setting not in ("quarantine", "reject"):
        return "deliver"
    return "reject" if setting == "reject" and result.policy == "reject" else "quarantine"


class Authenticator:
    """SPF, DKIM and DMARC for one message at a time, from any number of threads."""

    def __init__(self, nameservers: list[str], port: int, timeout: float) -> None:
        self.dns = AuthDns(nameservers, port, timeout)
        self.timeout = timeout
        self._quiet = logging.getLogger("commune.auth.dkimpy")
        self._quiet.addHandler(logging.NullHandler())
        self._quiet.propagate = False

    def check(self, raw: bytes, ip: str, mail_from: str, helo: str, cached_only: bool = False) -> Authentication:
        """Every check for a message received from `ip`; never raises but NotCached.

        With `cached_only`, a lookup whose answer is not in the cache raises NotCached instead of
        asking: the caller can try that in a thread that must not wait, and go to DNS only on a miss.
        """
        result = Authentication()
        _current.dns, _current.cached_only = self.dns, cached_only
        try:
            self._spf(result, ip, mail_from, helo)
            headers = header_block(raw)
            domains = from_domains(headers)
            self._dkim(result, raw, headers)
            self._dmarc(result, domains)
        except NotCached:
            raise
        except Exception:
            log.exception("authenticating a message from %s failed", mail_from or helo)
        finally:
            _current.dns, _current.cached_only = None, False
        return result

    def _spf(self, result: Authentication, ip: str, mail_from: str, helo: str) -> None:
        helo = helo.strip().lower()
        if mail_from and "@" in mail_from:
            result.spf_domain = clean_domain(mail_from.rpartition("@")[2])
        else:
            result.spf_scope = "helo"
            result.spf_domain = clean_domain(helo)
        if result.spf_domain is None or not ip:
            return
        query = spf.query(i=ip, s=mail_from if result.spf_scope == "mailfrom" else "", h=helo or "unknown",
                          timeout=self.timeout, querytime=SPF_TOTAL_SECONDS)
        outcome = query.check()[0]
        result.spf = outcome if outcome in RESULTS else "permerror"

    def _dkim(self, result: Authentication, raw: bytes, headers: bytes) -> None:
        # Most mail is unsigned: skip dkimpy's parse of the whole message when there is nothing to verify.
        if b"dkim-signature" not in headers.lower():
            return
        try:
            verifier = dkim.DKIM(raw, logger=self._quiet, minkey=1024, timeout=self.timeout)
        except dkim.DKIMException:
            result.dkim = "permerror"
            return
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
        for index in range(min(count, MAX_SIGNATURES)):
            result.signatures.append(self._signature(verifier, index))
        outcomes = {s.result for s in result.signatures}
        for outcome in ("pass", "temperror", "fail", "permerror", "neutral"):
            if outcome in outcomes:
                result.dkim = outcome
                break

    def _signature(self, verifier: dkim.DKIM, index: int) -> Signature:
        """One DKIM-Signature: `pass`, `fail` (hashes differ), `permerror` (bad tags or key), `temperror`."""
        try:
            prepared = verifier.verify_headerprep(index)
        except dkim.DKIMException:
            return Signature(None, None, "permerror")
        if not prepared:
            return Signature(None, None, "permerror")
        sig, include_headers, sigheaders = prepared
        signature = Signature(clean_domain(sig.get(b"d")), _selector(sig.get(b"s")), "fail")
        trouble: list[str] = []

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
            try:
                records = self.dns.txt(text)
            except TemporaryDnsError as exc:
                trouble.append("temperror")
                raise dkim.DnsTimeoutError(str(exc)) from None
            if not records:
                trouble.append("permerror")
            return records[0] if records else None

        verifier.pk = None
        try:
            valid = verifier.verify_sig(sig, include_headers, sigheaders[index], dnsfunc)
        except dkim.ValidationError:
            valid = False  # the body hash differs: the message was changed after signing
        except dkim.DKIMException:
            return Signature(signature.domain, signature.selector, "permerror")
        if valid:
            signature.result = "pass"
        elif trouble:
            signature.result = trouble[0]
        elif verifier.pk is None:
            signature.result = "permerror"  # the published key could not be used
        return signature

    def _dmarc(self, result: Authentication, domains: list[str | None]) -> None:
        if not domains:
            result.dmarc = "permerror"  # RFC 7489 §6.6.1: a message without a From domain cannot be evaluated
            return
        unique = set(domains)
        if len(unique) != 1 or None in unique:
            result.dmarc = "permerror"
            return
        from_domain = domains[0]
        assert from_domain is not None
        result.from_domain = from_domain
        try:
            record = self._dmarc_record(from_domain)
        except TemporaryDnsError:
            result.dmarc = "temperror"
            return
        if record is None:
            return
        result.policy = record.policy
        spf_aligned = result.spf_domain is not None and aligned(result.spf_domain, from_domain, record.aspf)
        dkim_aligned = [s for s in result.signatures if s.domain and aligned(s.domain, from_domain, record.adkim)]
        if (spf_aligned and result.spf == "pass") or any(s.result == "pass" for s in dkim_aligned):
            result.dmarc = "pass"
        elif (spf_aligned and result.spf == "temperror") or any(s.result == "temperror" for s in dkim_aligned):
            result.dmarc = "temperror"  # an aligned check that could not run might have passed
        else:
            result.dmarc = "fail"

    def _dmarc_record(self, from_domain: str) -> DmarcRecord | None:
        """The From domain's DMARC record, else its organisational domain's (RFC 7489 §6.6.3)."""
        record = self._dmarc_at(from_domain, organisational=False)
        organisation = organisational_domain(from_domain)
        if record is None and organisation != from_domain:
            record = self._dmarc_at(organisation, organisational=True)
        return record

    def _dmarc_at(self, domain: str, organisational: bool) -> DmarcRecord | None:
        texts = [t.decode("utf-8", "replace") for t in self.dns.txt(f"_dmarc.{domain}")]
        records = [r for r in (parse_dmarc(t, organisational) for t in texts) if r is not None]
        return records[0] if len(records) == 1 else None  # several records count as none (§6.6.3)


def _selector(value: bytes | None) -> str | None:
    if not value:
        return None
    text = value.decode("ascii", "replace").strip().lower()
    return text if re.fullmatch(r"[a-z0-9_.-]{1,63}", text) else None
