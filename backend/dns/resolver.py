"""One configured async resolver for verification, MX lookups and recipient validation."""

from __future__ import annotations

import dns.asyncresolver
import dns.resolver


def make_resolver(servers: list[str], timeout: float = 3.0) -> dns.asyncresolver.Resolver:
    """Servers as `ip` or `ip:port` (IPv6 as `[ip]:port`); empty means the system's resolvers."""
    if not servers:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        nameservers, ports = [], set()
        for entry in servers:
            host, port = entry, 53
            if entry.startswith("["):
                host, _, rest = entry[1:].partition("]")
                if rest.startswith(":"):
                    port = int(rest[1:])
            elif entry.count(":") == 1:
                host, port_text = entry.split(":")
                port = int(port_text)
            nameservers.append(host)
            ports.add(port)
        resolver.nameservers = nameservers
        resolver.port = ports.pop() if len(ports) == 1 else 53
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver
