"""Where the server's own outbound connections may go: the address policy of webhooks and direct MX.

Tenants choose webhook endpoints and, through their recipients, which MX hosts the server connects
to. Unless the operator opts in, only public unicast addresses are allowed, checked on every address
a name resolves to; callers then connect to the vetted address itself, so a second lookup cannot
rebind the name somewhere else.

IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that IPv4 address, because
that is where a connection to them ends up.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import dns.asyncresolver
import dns.resolver

IPAddress = IPv4Address | IPv6Address


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPv4Network | IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(network), kind) for network, kind in rows)


_IPV4_REFUSED = _table(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)

# Only 2000::/3 is global unicast; these name the other blocks a resolver might hand out.
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_IPV6_REFUSED = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001::/23", "IETF protocol assignment"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address a connection to `ip` reaches, and the form that carries it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    return None


def classify(address: str | IPAddress) -> str | None:
    """Why `address` is not a public unicast address (e.g. "loopback"), or None when it is one."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            kind = classify(embedded[0])
            return None if kind is None else f"{kind} in {embedded[1]}"
    table = _IPV4_REFUSED if isinstance(ip, IPv4Address) else _IPV6_REFUSED
    for network, kind in table:
        if ip in network:
            return kind
    if isinstance(ip, IPv6Address) and ip not in _IPV6_GLOBAL_UNICAST:
        return "reserved"
    return None


def is_public(address: str | IPAddress) -> bool:
    return classify(address) is None


def is_loopback_name(host: str) -> bool:
    """`localhost` and its subdomains always mean this machine (RFC 6761), whatever DNS says."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def literal_address(host: str) -> IPAddress | None:
    """`host` as an IP address when it is written as one (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def refused_text(address: str) -> str:
    """`127.0.0.1 (loopback)`: an address and why it is refused, for delivery logs."""
    return f"{address} ({classify(address)})"


async def resolve(host: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    """Every A and AAAA address of `host`; a name without either gives []. Other DNS errors propagate."""
    found: list[str] = []
    for rtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        found.extend(record.to_text() for record in answer)
    return found
