"""Slow and greedy clients: slowloris, slow bodies, slow SMTP DATA and connection floods.

Each slow client is cut off while others keep being served; each listener refuses connections beyond
its cap with a proper reply and recovers once they close.
"""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox

CAP = 12


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, dns_server) -> Iterator[Running]:
    server = start_server(tmp_path_factory.mktemp("strict"), dns_server, header_timeout=0.5, body_timeout=0.5,
                          idle_timeout=1.0, max_connections=CAP)
    yield server
    server.stop()


def _trickle_until_closed(sock: socket.socket, data: bytes, pause: float = 0.1) -> bytes:
    """Send `data` a byte at a time; return what the server answered once it hung up ('' if it never did)."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(pause)
        sock.settimeout(0.001)
        try:
            answer = sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            continue
        except OSError:
            return b"<reset>"
        finally:
            sock.settimeout(10)
        rest = b""
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except OSError:
            pass
        return answer + rest
    return b""


def _served(server: Running) -> bool:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        return client.get("/health").status_code == 200


def test_slowloris_headers_are_cut_off_while_others_are_served(strict: Running) -> None:
    sock = socket.create_connection(("127.0.0.1", strict.server.port), timeout=10)
    head = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(40))
    assert _served(strict)
    answer = _trickle_until_closed(sock, head)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer  # long before all 400-odd bytes went out
    assert _served(strict)


def test_slow_body_is_cut_off(strict: Running) -> None:
    key = strict.new_key()
    sock = socket.create_connection(("127.0.0.1", strict.server.port), timeout=10)
    sock.sendall(b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
    answer = _trickle_until_closed(sock, b'{"local_part": "' + b"s" * 380 + b'"}')
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    with strict.client(key) as api:
        assert api.get("/v1/inboxes").json()["data"] == []


def test_http_connection_cap_refuses_extra_connections_then_recovers(strict: Running) -> None:
    held = [socket.create_connection(("127.0.0.1", strict.server.port), timeout=10) for _ in range(CAP)]
    try:
        with httpx.Client(base_url=strict.url, timeout=5) as client:
            over = client.get("/health")
        assert over.status_code == 503 and over.json()["error"]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with httpx.Client(base_url=strict.url, timeout=5) as client:
            if client.get("/health").status_code == 200:
                break
        time.sleep(0.05)
    else:
        pytest.fail("the server did not recover after the held connections closed")


def test_slow_smtp_data_is_cut_off_while_other_sessions_deliver(strict: Running) -> None:
    with strict.client(strict.new_key()) as api:
        inbox = make_inbox(api)
        slow = smtplib.SMTP("127.0.0.1", strict.server.smtp_port, timeout=10)
        slow.ehlo("slow.example")
        slow.mail("slow@example.net")
        slow.rcpt(inbox["address"])
        slow.putcmd("data")
        assert slow.getreply()[0] == 354
        with smtplib.SMTP("127.0.0.1", strict.server.smtp_port, timeout=10) as fast:
            fast.sendmail("fast@example.net", [inbox["address"]], b"Subject: fast\r\n\r\nquick\r\n")
        answer = _trickle_until_closed(slow.sock, b"Subject: slow\r\n\r\n" + b"x" * 400 + b"\r\n.\r\n")
        slow.close()
        assert answer in (b"", b"<reset>") or answer.startswith(b"421"), answer
        subjects = [m["metadata"]["subject"] for m in api.get("/v1/messages", params={"inbox_id": inbox["id"]})
                    .json()["data"]]
    assert subjects == ["fast"]


def test_smtp_connection_cap_refuses_extra_sessions(strict: Running) -> None:
    held = [smtplib.SMTP("127.0.0.1", strict.server.smtp_port, timeout=10) for _ in range(CAP)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", strict.server.smtp_port, timeout=10)
        assert refused.value.smtp_code == 421
    finally:
        for session in held:
            session.close()


PER_CLIENT = 4


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, dns_server) -> Iterator[Running]:
    server = start_server(tmp_path_factory.mktemp("capped"), dns_server, max_connections_per_client=PER_CLIENT)
    yield server
    server.stop()


def _health_from(server: Running, address: str) -> int:
    """Status of `/health` asked from the loopback address `address` (127.0.0.2 and 127.0.0.3 are two clients)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=server.url, timeout=5, transport=transport) as client:
        return client.get("/health").status_code


def test_one_address_cannot_take_every_connection(capped: Running) -> None:
    held = []
    try:
        for _ in range(PER_CLIENT):
            sock = socket.create_connection(("127.0.0.1", capped.server.port), timeout=10,
                                            source_address=("127.0.0.2", 0))
            held.append(sock)
            # An answered request proves the server counts this connection before the next one opens.
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
        assert _health_from(capped, "127.0.0.2") == 503
        assert _health_from(capped, "127.0.0.3") == 200
        assert _health_from(capped, "127.0.0.1") == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while _health_from(capped, "127.0.0.2") != 200:
        if time.monotonic() > deadline:
            pytest.fail("127.0.0.2 was not served again after its connections closed")
        time.sleep(0.05)
