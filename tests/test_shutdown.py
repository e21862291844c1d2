"""SIGTERM on `commune-server serve`: in-flight work finishes, new connections are refused, exit code 0."""

from __future__ import annotations

import signal
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess


@pytest.fixture
def server(tmp_path: Path, dns_server, engine) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, "--dns-servers", dns_server.address, engine=engine).start()
    yield proc
    proc.stop()


def _inbox(server: ServerProcess, local_part: str) -> dict:
    with server.client() as api:
        response = api.post("/v1/inboxes", json={"local_part": local_part})
        assert response.status_code == 201, response.text
        return response.json()["data"]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _health(server: ServerProcess) -> bool:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return client.get("/health").status_code == 200


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


def _wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_in_flight_http_requests_and_refuses_new_ones(server: ServerProcess) -> None:
    inbox = _inbox(server, "longpoll")
    auth = b"Authorization: Bearer " + server.admin_key.encode() + b"\r\n"
    poll = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    poll.sendall(b"GET /v1/messages/wait?timeout=2&inbox_id=" + inbox["id"].encode() + b" HTTP/1.1\r\n"
                 b"Host: x\r\n" + auth + b"\r\n")
    body = b'{"local_part": "halfway"}'
    half = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    half.sendall(b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
                 + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    # Connections are accepted in order: once a later one is answered, both earlier ones are in flight.
    assert _health(server)
    server.signal(signal.SIGTERM)
    assert _wait_until(lambda: _refused(server.port)), "the HTTP port still accepts after SIGTERM"
    half.sendall(body[10:])
    for sock, status in ((half, b"201"), (poll, b"200")):
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
        assert b"connection: close" in answer.lower()
    assert server.wait(30) == 0, "".join(server.log)

    server.start()  # the same data directory: the half-sent inbox was really stored
    with server.client() as api:
        addresses = [i["address"] for i in api.get("/v1/inboxes").json()["data"]]
    assert "halfway@commune.localhost" in addresses


def test_sigterm_lets_an_smtp_transaction_in_data_finish(server: ServerProcess) -> None:
    inbox = _inbox(server, "slowdata")
    smtp = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=20)
    smtp.ehlo("client.example")
    assert smtp.mail("sender@example.net")[0] == 250
    assert smtp.rcpt(inbox["address"])[0] == 250
    smtp.putcmd("data")
    assert smtp.getreply()[0] == 354
    smtp.send(b"From: sender@example.net\r\nTo: " + inbox["address"].encode() + b"\r\n"
              b"Subject: finishing during shutdown\r\nMessage-ID: <shutdown-1@example.net>\r\n\r\n")
    server.signal(signal.SIGTERM)
    assert _wait_until(lambda: _refused(server.smtp_port)), "the SMTP port still accepts after SIGTERM"
    smtp.send(b"the last line\r\n.\r\n")
    code, reply = smtp.getreply()
    assert code == 250, reply
    smtp.close()
    assert server.wait(30) == 0, "".join(server.log)

    server.start()
    with server.client() as api:
        messages = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert [m["metadata"]["subject"] for m in messages] == ["finishing during shutdown"]


def test_sigterm_on_an_idle_server_exits_cleanly(server: ServerProcess) -> None:
    idle_http = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    idle_smtp = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=20)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0, "".join(server.log)
    assert idle_http.recv(1) == b""  # idle keep-alive connections are closed, not left hanging
    idle_http.close()
    idle_smtp.close()
    assert _refused(server.port) and _refused(server.smtp_port)
