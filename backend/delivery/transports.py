"""How a message leaves: through a configured smarthost, or straight to the recipient domain's MX hosts.

Both speak SMTP with aiosmtplib and turn the remote's answer into an `Outcome`: `sent` (2xx),
`deferred` (4xx, connection and DNS trouble: try again later), `bounced` (5xx from the remote) or
`failed` (the domain cannot receive mail at all).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from ..config import Settings

IDLE_SECONDS = 30.0
_ENHANCED = re.compile(r"^5\.(\d{1,3})\.(\d{1,3})\b")


@dataclass
class Outcome:
    kind: str
    """`sent`, `deferred`, `bounced` or `failed`."""
    detail: str
    suppress: bool = True
    """Whether a bounce or failure says the address itself is bad (and so suppresses it)."""


class Transport(Protocol):
    async def send(self, mail_from: str, recipient: str, raw: bytes) -> Outcome: ...

    async def close(self) -> None: ...


def _refusal(code: int, message: str) -> Outcome:
    """A remote's non-2xx answer: 4xx defers; 5xx bounces, suppressing only when the mailbox itself is bad."""
    detail = f"{code} {message}".strip()
    if code < 500:
        return Outcome("deferred", detail)
    # Enhanced codes 5.1.x (bad address) and 5.2.1 (mailbox disabled) are about the recipient;
    # others, e.g. 5.7.1 policy or spam rejections, are about this message and say nothing of the address.
    enhanced = _ENHANCED.match(message.strip())
    about_address = enhanced is None or enhanced[1] == "1" or (enhanced[1], enhanced[2]) == ("2", "1")
    return Outcome("bounced", detail, suppress=about_address)


def _mail_options(raw: bytes) -> list[str]:
    return [] if raw.isascii() else ["BODY=8BITMIME"]


async def _attempt(client: aiosmtplib.SMTP, mail_from: str, recipient: str, raw: bytes) -> Outcome:
    """One SMTP transaction (connecting first if needed); the remote's reply code decides the outcome."""
    try:
        if not client.is_connected:
            await client.connect()
        errors, response = await client.sendmail(mail_from, [recipient], raw, mail_options=_mail_options(raw))
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return _refusal(exc.recipients[0].code, exc.recipients[0].message)
    except aiosmtplib.SMTPResponseException as exc:
        return _refusal(exc.code, exc.message)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        return Outcome("deferred", f"Connection failed: {exc or type(exc).__name__}")
    if recipient in errors:
        return _refusal(errors[recipient].code, errors[recipient].message)
    return Outcome("sent", response)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()


class SmarthostTransport:
    """Everything goes to one relay (`host:port`), with optional STARTTLS or implicit TLS and AUTH.

    Connections are kept open between messages (up to `delivery_concurrency`, for `IDLE_SECONDS`), so a
    busy queue pays for TCP, TLS and AUTH once rather than per recipient.
    """

    def __init__(self, settings: Settings) -> None:
        host, _, port = settings.relay.rpartition(":")
        if not host:
            host, port = settings.relay, "25"
        self.connection: dict[str, object] = {
            "hostname": host.strip("[]"), "port": int(port), "timeout": settings.delivery_timeout,
            "local_hostname": settings.hostname, "use_tls": settings.relay_tls == "tls",
            "start_tls": settings.relay_tls == "starttls",
            "username": settings.relay_username or None, "password": settings.relay_password or None,
        }
        self.max_idle = settings.delivery_concurrency
        self.idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def send(self, mail_from: str, recipient: str, raw: bytes) -> Outcome:
        client = await self._reuse() or aiosmtplib.SMTP(**self.connection)  # type: ignore[arg-type]
        outcome = await _attempt(client, mail_from, recipient, raw)
        if outcome.kind != "deferred" and client.is_connected and len(self.idle) < self.max_idle:
            self.idle.append((client, time.monotonic()))
        else:
            await _quit(client)
        return outcome

    async def _reuse(self) -> aiosmtplib.SMTP | None:
        """An idle connection that still answers RSET; stale ones are closed on the way."""
        while self.idle:
            client, since = self.idle.pop()
            if time.monotonic() - since > IDLE_SECONDS:
                await _quit(client)
                continue
            try:
                await client.rset()
                return client
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()
        return None

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        await asyncio.gather(*(_quit(client) for client, _ in idle))


class DirectTransport:
    """MX hosts of the recipient's domain in preference order (the domain itself without MX), port 25."""

    def __init__(self, settings: Settings, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        self.port = settings.smtp_direct_port
        self.timeout = settings.delivery_timeout
        self.local_hostname = settings.hostname

    async def exchangers(self, domain: str) -> list[str]:
        """Host names to try, best first; equal preferences in random order (RFC 5321 §5.1)."""
        try:
            answer = await self.resolver.resolve(domain, "MX")
        except dns.resolver.NoAnswer:
            return [domain]
        records = sorted(answer, key=lambda r: (r.preference, random.random()))
        return [str(r.exchange).rstrip(".") for r in records if str(r.exchange) not in (".", "")]

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                found += [r.address for r in await self.resolver.resolve(host, rtype)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
        return found

    async def send(self, mail_from: str, recipient: str, raw: bytes) -> Outcome:
        domain = recipient.rsplit("@", 1)[-1]
        try:
            hosts = await self.exchangers(domain)
        except dns.resolver.NXDOMAIN:
            return Outcome("failed", f"Domain {domain} does not exist")
        except dns.exception.DNSException as exc:
            return Outcome("deferred", f"MX lookup for {domain} failed: {exc or type(exc).__name__}")
        if not hosts:
            return Outcome("failed", f"Domain {domain} does not accept mail (null MX)")
        last = Outcome("deferred", f"No address found for the mail exchangers of {domain}")
        for host in hosts:
            try:
                addresses = await self.addresses(host)
            except dns.exception.DNSException as exc:
                last = Outcome("deferred", f"Address lookup for {host} failed: {exc or type(exc).__name__}")
                continue
            for address in addresses:
                # Opportunistic STARTTLS: MX certificates rarely match, and plain text is the alternative.
                client = aiosmtplib.SMTP(hostname=address, port=self.port, timeout=self.timeout,
                                         local_hostname=self.local_hostname, start_tls=None, validate_certs=False)
                outcome = await _attempt(client, mail_from, recipient, raw)
                await _quit(client)
                if outcome.kind != "deferred":
                    return outcome
                last = Outcome("deferred", f"{host}: {outcome.detail}")
        return last

    async def close(self) -> None:
        """Nothing to close: every delivery uses its own connection to that domain's exchanger."""


def make_transport(settings: Settings, resolver: dns.asyncresolver.Resolver) -> Transport:
    return SmarthostTransport(settings) if settings.relay else DirectTransport(settings, resolver)
