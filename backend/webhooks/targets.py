"""Webhook targets are untrusted URLs: refuse private and loopback addresses when configured to.

The host is resolved once with the server's resolver and the request is sent to the vetted address
(with the original Host header and TLS server name), so a second lookup cannot rebind it elsewhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx


class RefusedTarget(Exception):
    """The endpoint points somewhere webhooks may not go; retrying cannot help."""


class UnresolvedTarget(Exception):
    """The endpoint's host has no address right now; a later attempt may succeed."""


@dataclass
class Target:
    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def _addresses(host: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    found: list[str] = []
    for rtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            continue
        except dns.exception.DNSException as exc:
            raise UnresolvedTarget(f"could not resolve {host}: {exc.__class__.__name__}") from exc
        found.extend(r.to_text() for r in answer)
    return found


async def vet(endpoint: str, resolver: dns.asyncresolver.Resolver, allow_private: bool) -> Target:
    """Where to send a webhook; raises RefusedTarget for a non-public host when private targets are off."""
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        raise RefusedTarget(f"webhook endpoint is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise RefusedTarget("webhook endpoint must be an http(s) URL")
    if allow_private:
        return Target(url)
    host = url.host
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            raise RefusedTarget(f"webhook endpoint {host} is a loopback name") from None
        addresses = await _addresses(host, resolver)
        if not addresses:
            raise UnresolvedTarget(f"{host} has no A or AAAA record")
    refused = [a for a in addresses if not is_public(a)]
    if refused:
        raise RefusedTarget(f"webhook endpoint {host} resolves to a private or loopback address ({refused[0]})")
    pinned = url.copy_with(host=addresses[0])
    authority = host if url.port is None else f"{host}:{url.port}"
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return Target(pinned, {"host": authority}, extensions)
