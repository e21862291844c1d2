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
from ..netpolicy import is_loopback_name, is_public, refused_text, resolve

IDLE_SECONDS = 30.0
FRESH_SECONDS = 1.0
"""An idle connection this recent is reused without the RSET that checks it still answers."""
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


async def _attempt(client: aiosmtplib.SMTP, mail_from: str, recipient: str, raw: bytes,
                   tls_name: str | None = None) -> Outcome:
    """One SMTP transaction (connecting first if needed); the remote's reply code decides the outcome.

    With `tls_name`, a new connection upgrades to TLS when the remote offers STARTTLS, presenting
    that name (the client itself connects to an address, which carries no server name).
    """
    try:
        if not client.is_connected:
            await client.connect()
            if tls_name is not None:
                await _upgrade_if_offered(client, tls_name)
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


async def _upgrade_if_offered(client: aiosmtplib.SMTP, server_name: str) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        return  # a server that refuses EHLO offers no STARTTLS; sendmail greets it with HELO
    if client.supports_extension("starttls"):
        await client.starttls(server_hostname=server_name)


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
        reused = await self._reuse()
        client = reused or aiosmtplib.SMTP(**self.connection)  # type: ignore[arg-type]
        outcome = await _attempt(client, mail_from, recipient, raw)
        if reused is not None and outcome.kind == "deferred" and (
                not client.is_connected or outcome.detail.startswith("421")):
            # The relay ended a pooled session since its last message (a 421, a closed socket): once more
            # on a new connection now, as the deferral would later.
            await _quit(client)
            client = aiosmtplib.SMTP(**self.connection)  # type: ignore[arg-type]
            outcome = await _attempt(client, mail_from, recipient, raw)
        if outcome.kind != "deferred" and client.is_connected and len(self.idle) < self.max_idle:
            self.idle.append((client, time.monotonic()))
        else:
            await _quit(client)
        return outcome

    async def _reuse(self) -> aiosmtplib.SMTP | None:
        """An idle connection still open: at once when it finished a transaction a moment ago, else once
        it has answered RSET. Stale ones are closed on the way."""
        while self.idle:
            client, since = self.idle.pop()
            idle = time.monotonic() - since
            if idle > IDLE_SECONDS or not client.is_connected:
                await _quit(client)
                continue
            if idle < FRESH_SECONDS:
                # A busy queue: no remote drops a session it answered a second ago, so the round trip
                # of a liveness check would only add to every message's way out.
                return client
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
    """MX hosts of the recipient's domain in preference order (the domain itself without MX), port 25.

    Unless the operator allows private destinations, only public addresses of each host are used
    (see `netpolicy`): a host without one is skipped, and a domain whose hosts all resolve only to
    private addresses fails without any connection being made.
    """

    def __init__(self, settings: Settings, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        self.port = settings.smtp_direct_port
        self.timeout = settings.delivery_timeout
        self.local_hostname = settings.hostname
        self.allow_private = settings.delivery_allow_private

    async def exchangers(self, domain: str) -> list[str]:
        """Host names to try, best first; equal preferences in random order (RFC 5321 §5.1)."""
        try:
            answer = await self.resolver.resolve(domain, "MX")
        except dns.resolver.NoAnswer:
            return [domain]
        records = sorted(answer, key=lambda r: (r.preference, random.random()))
        return [str(r.exchange).rstrip(".") for r in records if str(r.exchange) not in (".", "")]

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
        refused: dict[str, str] = {}
        remaining = False  # whether some host could still be tried, now or on a later attempt
        for host in hosts:
            if is_loopback_name(host) and not self.allow_private:
                refused[host] = "a loopback name"
                continue
            try:
                addresses = await resolve(host, self.resolver)
            except dns.exception.DNSException as exc:
                last = Outcome("deferred", f"Address lookup for {host} failed: {exc or type(exc).__name__}")
                remaining = True
                continue
            if not self.allow_private:
                public = [a for a in addresses if is_public(a)]
                if addresses and not public:
                    refused[host] = ", ".join(refused_text(a) for a in addresses[:2])
                addresses = public
            remaining = remaining or bool(addresses)
            for address in addresses:
                # Opportunistic STARTTLS: MX certificates rarely match, and plain text is the alternative.
                client = aiosmtplib.SMTP(hostname=address, port=self.port, timeout=self.timeout,
                                         local_hostname=self.local_hostname, start_tls=False, validate_certs=False)
                outcome = await _attempt(client, mail_from, recipient, raw, tls_name=host)
                await _quit(client)
                if outcome.kind != "deferred":
                    return outcome
                last = Outcome("deferred", f"{host}: {outcome.detail}")
        if refused and not remaining:
            return Outcome("failed", _refusal_detail(refused), suppress=False)
        return last

    async def close(self) -> None:
        """Nothing to close: every delivery uses its own connection to that domain's exchanger."""


def _refusal_detail(refused: dict[str, str]) -> str:
    """`MX host mx.x resolves only to private addresses: 127.0.0.1 (loopback); refused`."""
    if len(refused) == 1:
        [(host, why)] = refused.items()
        return f"MX host {host} resolves only to private addresses: {why}; refused"
    listed = "; ".join(f"{host}: {why}" for host, why in refused.items())
    return f"MX hosts resolve only to private addresses ({listed}); refused"


def make_transport(settings: Settings, resolver: dns.asyncresolver.Resolver) -> Transport:
    return SmarthostTransport(settings) if settings.relay else DirectTransport(settings, resolver)
