"""A small authoritative DNS server on 127.0.0.1 for tests, built with dnspython.

Tests publish records into `zone` ({(name, type): [rdata text, ...]}); names not in it get NXDOMAIN.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class TestDNSServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.zone: dict[tuple[str, str], list[str]] = {}
        self.silent: set[str] = set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def publish(self, name: str, rtype: str, *values: str) -> None:
        """Publish rdata in zone-file text; a long quoted TXT value is split into 255-byte strings."""
        if rtype.upper() == "TXT":
            values = tuple(_split_txt(v) for v in values)
        with self.lock:
            self.zone[(name.rstrip(".").lower(), rtype.upper())] = list(values)

    def remove(self, name: str, rtype: str | None = None) -> None:
        with self.lock:
            for key in list(self.zone):
                if key[0] == name.rstrip(".").lower() and (rtype is None or key[1] == rtype.upper()):
                    del self.zone[key]

    def start(self) -> TestDNSServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name in self.silent:
                continue  # simulate a resolver that never answers
            rtype = dns.rdatatype.to_text(question.rdtype)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            with self.lock:
                values = self.zone.get((name, rtype))
                known = any(key[0] == name for key in self.zone)
            if values:
                try:
                    rrset = dns.rrset.from_text_list(
                        question.name, 60, dns.rdataclass.IN, question.rdtype, values
                    )
                    response.answer.append(rrset)
                except Exception:
                    response.set_rcode(dns.rcode.SERVFAIL)
            elif not known:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


def _split_txt(value: str) -> str:
    if value.startswith('"') and value.endswith('"') and value.count('"') == 2 and len(value) > 257:
        inner = value[1:-1]
        return " ".join(f'"{inner[i:i + 255]}"' for i in range(0, len(inner), 255))
    return value
