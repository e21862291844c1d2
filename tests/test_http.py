"""The HTTP layer over raw sockets: keep-alive, pipelining, chunked bodies, limits, timeouts, HEAD."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from tests.conftest import start_server
from tests.mailtools import make_inbox


def _connect(running) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", running.server.port), timeout=10)
    return sock


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """Read one response (content-length or chunked) from the socket; leftover bytes stay in buffer."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buffer.extend(chunk)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    buffer[:] = rest
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer.extend(chunk)
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, headers, body


def _auth(running) -> str:
    return f"Authorization: Bearer {running.admin_key}\r\n"


def test_keep_alive_serves_many_requests_on_one_connection(running) -> None:
    sock, buffer = _connect(running), bytearray()
    for _ in range(5):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = _read_response(sock, buffer)
        assert status == 200 and headers["connection"] == "keep-alive"
        assert json.loads(body)["status"] == "ok"
    sock.close()


def test_pipelined_requests_are_answered_in_order(running) -> None:
    sock, buffer = _connect(running), bytearray()
    auth = _auth(running).encode()
    batch = (
        b"GET /v1/domains HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    sock.sendall(batch)
    statuses = [_read_response(sock, buffer)[0] for _ in range(3)]
    assert statuses == [200, 404, 200]
    sock.close()


def test_chunked_request_body_is_accepted(running) -> None:
    sock, buffer = _connect(running), bytearray()
    key = running.new_key()
    payload = json.dumps({"local_part": "chunky"}).encode()
    half = len(payload) // 2
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, payload[:half], len(payload) - half, payload[half:])
    sock.sendall(
        b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nContent-Type: application/json\r\n\r\n" + body
    )
    status, _, response = _read_response(sock, buffer)
    assert status == 201, response
    assert json.loads(response)["data"]["localPart"] == "chunky"
    sock.close()


def test_head_returns_headers_without_body(running) -> None:
    sock, buffer = _connect(running), bytearray()
    sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    while buffer.count(b"\r\n\r\n") < 2 or not buffer.endswith(b"}"):
        buffer.extend(sock.recv(65536))
    first, second = bytes(buffer).split(b"HTTP/1.1 200 OK")[1:]
    assert b"content-length: " in first and first.endswith(b"\r\n\r\n")
    assert second.rstrip().endswith(b"}")
    sock.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["garbage", "bad-length", "smuggling-cl-te", "duplicate-length"],
)
def test_malformed_http_gets_400_and_the_connection_closes(running, raw: bytes) -> None:
    sock, buffer = _connect(running), bytearray()
    sock.sendall(raw)
    status, headers, body = _read_response(sock, buffer)
    assert status == 400
    assert "error" in json.loads(body)
    assert headers["connection"] == "close"
    sock.close()


def test_oversized_headers_are_refused(running) -> None:
    sock, buffer = _connect(running), bytearray()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    status, _, body = _read_response(sock, buffer)
    assert status == 431
    assert json.loads(body)["error"]
    sock.close()


def test_declared_body_over_the_limit_is_413_before_it_is_sent(tmp_path, dns_server) -> None:
    server = start_server(tmp_path, dns_server, max_body_bytes=1000)
    try:
        sock, buffer = _connect(server), bytearray()
        sock.sendall(b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, _, body = _read_response(sock, buffer)
        assert status == 413
        assert json.loads(body) == {"error": "Request body too large"}
        # an admitted chunked body that grows past the limit is cut off too
        sock = _connect(server)
        buffer = bytearray()
        sock.sendall(b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     + _auth(server).encode() + b"\r\n")
        sock.sendall(b"800\r\n" + b"x" * 0x800 + b"\r\n")
        status, _, _ = _read_response(sock, buffer)
        assert status == 413
    finally:
        server.stop()


def test_a_client_that_never_finishes_its_headers_is_timed_out(tmp_path, dns_server) -> None:
    server = start_server(tmp_path, dns_server, header_timeout=0.5, idle_timeout=0.5)
    try:
        slow = _connect(server)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never sends the blank line
        buffer = bytearray()
        status, headers, _ = _read_response(slow, buffer)
        assert status == 408 and headers["connection"] == "close"
        # an idle keep-alive connection is closed too, and others are still served meanwhile
        idle = _connect(server)
        idle.settimeout(5)
        with server.client() as client:
            assert client.get("/health").status_code == 200
        assert idle.recv(10) == b""
    finally:
        server.stop()


def test_unknown_route_and_wrong_method_are_json(running, admin) -> None:
    missing = admin.get("/v1/not-a-thing")
    assert missing.status_code == 404 and missing.json()["error"]
    wrong = admin.delete("/v1/domains")
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"] and wrong.json()["error"]
    hosted_only = admin.get("/v1/sms/conversations")
    assert hosted_only.status_code == 404
    assert "not offered" in hosted_only.json()["error"]


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path, dns_server) -> None:
    server = start_server(tmp_path, dns_server)
    sock, buffer = _connect(server), bytearray()
    # a request whose body is still arriving when shutdown starts is completed and answered
    payload = json.dumps({"local_part": "late"}).encode()
    sock.sendall(
        b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + server.admin_key.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(payload)
        + payload[:5]
    )
    time.sleep(0.2)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.2)
    sock.sendall(payload[5:])
    status, headers, body = _read_response(sock, buffer)
    stopper.join(10)
    assert status == 201, body
    assert headers["connection"] == "close"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.server.port), timeout=2)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes its side (the socket's timeout bounds each wait)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _statuses(raw: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


@pytest.mark.parametrize(("request_line", "key_scopes", "status"), [
    (b"POST /v1/attachments/upload", None, 401),
    (b"POST /v1/attachments/upload", ["attachments:read"], 403),
    (b"POST /v1/no-such-thing", ["read", "write"], 404),
    (b"PUT /v1/attachments/upload", ["read", "write"], 405),
], ids=["no-key", "no-scope", "no-route", "wrong-method"])
def test_a_refused_request_is_answered_from_its_head_without_waiting_for_the_body(
        running, request_line: bytes, key_scopes: list[str] | None, status: int) -> None:
    auth = b"" if key_scopes is None else b"Authorization: Bearer " + running.new_key(key_scopes).encode() + b"\r\n"
    with _connect(running) as sock:
        # 40 MiB declared, not one byte of it sent: the answer must not depend on the body arriving.
        sock.sendall(request_line + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Filename: big.bin\r\n"
                     b"Content-Length: 41943040\r\n\r\n")
        raw = _read_until_closed(sock)
    assert _statuses(raw) == [status], raw[:300]
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]
    assert b"connection: close" in raw


def test_a_large_upload_arrives_whole(running, api) -> None:
    content = bytes(range(256)) * (3 * 4096 + 7)  # past the in-memory threshold: spooled to disk
    uploaded = api.post("/v1/attachments/upload", content=content, headers={"X-Filename": "big.bin"})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["data"]["size"] == len(content)
    url = api.get(f"/v1/attachments/{uploaded.json()['data']['attachment_id']}/url").json()["data"]["url"]
    assert api.get(url).content == content


def test_a_valid_pipelined_request_is_answered_before_the_garbage_after_it(running) -> None:
    with _connect(running) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nTHIS IS NOT HTTP\r\n\r\n")
        raw = _read_until_closed(sock)
    assert _statuses(raw) == [200, 400], raw
    first, second = raw.split(b"HTTP/1.1 400 ")
    assert json.loads(first.split(b"\r\n\r\n", 1)[1])["status"] == "ok"
    assert json.loads(second.split(b"\r\n\r\n", 1)[1])["error"]


def test_a_json_route_refuses_a_body_over_its_limit_from_the_head(running) -> None:
    with _connect(running) as sock:
        sock.sendall(b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\n" + _auth(running).encode()
                     + b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
        raw = _read_until_closed(sock)
    assert _statuses(raw) == [413], raw[:300]


def test_a_send_with_a_large_html_body_is_accepted(api) -> None:
    alice, bob = make_inbox(api), make_inbox(api)
    html = "<p>" + "newsletter " * 200_000 + "</p>"  # about 2 MiB: past the in-memory threshold
    sent = api.post("/v1/messages/send", json={"to": [bob["address"]], "subject": "big", "html": html,
                                               "inboxId": alice["id"]})
    assert sent.status_code == 200, sent.text[:300]
    [received] = api.get("/v1/messages", params={"inbox_id": bob["id"]}).json()["data"]
    assert received["metadata"]["subject"] == "big"
