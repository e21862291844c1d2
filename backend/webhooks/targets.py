"""Webhook targets are untrusted URLs: refuse non-public addresses unless the operator allows them.

The host is resolved once with the server's resolver, every address it resolves to is checked, and
the request is sent to the vetted address (with the original Host header and TLS server name), so a
second lookup cannot rebind it elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import httpx

from ..netpolicy import is_loopback_name, is_public, literal_address, refused_text, resolve


class RefusedTarget(Exception):
    """The endpoint points somewhere webhooks may not go; retrying cannot help."""


class UnresolvedTarget(Exception):
    """The endpoint's host has no address right now; a later attempt may succeed."""


@dataclass
class Target:
    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def parse_endpoint(endpoint: str) -> httpx.URL:
    """The endpoint as an http(s) URL with a host; raises RefusedTarget otherwise."""
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        raise RefusedTarget(f"webhook endpoint is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise RefusedTarget("webhook endpoint must be an http(s) URL")
    return url


def refuse_by_name(host: str) -> None:
    """Refuse what the host alone shows to be non-public: a loopback name or a non-public literal."""
    if is_loopback_name(host):
        raise RefusedTarget(f"refused: endpoint {host} is a loopback name")
    literal = literal_address(host)
    if literal is not None and not is_public(literal):
        raise RefusedTarget(f"refused: endpoint is a private address {refused_text(str(literal))}")


async def vet(endpoint: str, resolver: dns.asyncresolver.Resolver, allow_private: bool) -> Target:
    """Where to send a webhook; raises RefusedTarget for a non-public host when private targets are off."""
    url = parse_endpoint(endpoint)
    if allow_private:
        return Target(url)
    host = url.host
    refuse_by_name(host)
    if literal_address(host) is not None:
        return Target(url)
    try:
        addresses = await resolve(host, resolver)
    except dns.exception.DNSException as exc:
        raise UnresolvedTarget(f"could not resolve {host}: {exc.__class__.__name__}") from exc
    if not addresses:
        raise UnresolvedTarget(f"{host} has no A or AAAA record")
    refused = [a for a in addresses if not is_public(a)]
    if refused:
        raise RefusedTarget(f"refused: endpoint {host} resolves to a private address {refused_text(refused[0])}")
    pinned = url.copy_with(host=addresses[0])
    authority = host if url.port is None else f"{host}:{url.port}"
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return Target(pinned, {"host": authority}, extensions)
