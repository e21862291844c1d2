"""Hostile HTTP: smuggling, oversized heads, broken JSON, path tricks and header injection via send.

Each attempt gets a clear 4xx with a JSON `error`, and nothing is stored or changed.
"""

from __future__ import annotations

import json
import smtplib
import socket

import httpx
import pytest

from tests.mailtools import make_inbox


def _exchange(running, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection (or goes quiet)."""
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"<still open>"
    return received


def _statuses(raw: bytes) -> list[int]:
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


SMUGGLED = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("head", [
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    b"Transfer-Encoding: xchunked\r\n",
    b"Content-Length: 3\r\nContent-Length: 40\r\n",
    b"Content-Length: +4\r\n",
    b"Content-Length: 4\r\n Transfer-Encoding: chunked\r\n",
], ids=["cl-te", "te-cl", "te-te", "te-obfuscated", "cl-cl", "cl-signed", "te-folded"])
def test_request_smuggling_is_refused_and_the_connection_closed(running, head: bytes) -> None:
    raw = _exchange(running, b"POST /v1/domains HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n0\r\n\r\n" + SMUGGLED)
    assert _statuses(raw) == [400], raw
    assert b'{"error":' in raw and raw.endswith(b"}")


@pytest.mark.parametrize(("request_head", "status"), [
    (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
     431),
    (b"GET /v1/health?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
    (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 400),
], ids=["huge-header", "many-headers", "huge-target", "nul-in-header", "upgrade"])
def test_oversized_or_malformed_heads_get_a_clear_4xx(running, request_head: bytes, status: int) -> None:
    raw = _exchange(running, request_head)
    assert _statuses(raw) == [status], raw[:300]
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.fixture
def inbox(api) -> dict:
    return make_inbox(api)


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"name": "\xff\xfe"}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"name": ' + b'{"a": ' * 200 + b"1" + b"}" * 201, "nested"),
    (b'{"retention_days": 1' + b"0" * 5000 + b"}", "JSON"),
    (b'{"retention_days": 1e400}', "retention_days"),
    (b'{"retention_days": 100000000000000000000000000000}', "retention_days"),
    (b'{"retention_days": -1}', "retention_days"),
    (b'{"name": "x"', "JSON"),
    (b'"just a string"', "object"),
], ids=["invalid-utf8", "deep-array", "deep-object", "5000-digits", "1e400", "1e29", "negative",
        "truncated", "not-an-object"])
def test_hostile_json_is_refused_and_changes_nothing(api, inbox: dict, body: bytes, needle: str) -> None:
    response = api.patch(f"/v1/inboxes/{inbox['id']}", content=body,
                         headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]
    after = api.get(f"/v1/inboxes/{inbox['id']}").json()["data"]
    assert after["displayName"] == inbox["displayName"]
    assert after["retention_days"] == inbox["retention_days"]


@pytest.mark.parametrize("path", [
    "/v1/inboxes/..%2F..%2Fserver.secret",
    "/v1/inboxes/../../server.secret",
    "/v1/attachments/..%2F..%2Fcommune.db",
    "/v1/attachments/%2e%2e%2fadmin.key/download?expires=9999999999&signature=x",
    "/v1/threads/..%2f..%2f..%2fetc%2fpasswd/messages",
    "/v1/domains/%00/records",
])
def test_path_traversal_in_ids_is_a_plain_not_found(running, api, path: str) -> None:
    response = api.get(path)
    assert response.status_code in (403, 404), response.text
    assert set(response.json()) == {"error"}
    settings = running.server.settings
    # The server secret (a file in the data dir, or on PostgreSQL a row of the database) and the admin key.
    server_secret = running.server.services.signer.secret.hex().encode()
    for secret in (server_secret, settings.admin_key_path.read_bytes()):
        assert secret.strip() not in response.content


@pytest.mark.parametrize("name", ["../../server.secret", "..%2F..%2Fx%0D%0ABcc: a@b.c", "a\r\nX-Evil: 1"])
def test_hostile_attachment_names_are_neutralised(api, name: str) -> None:
    if "\r" in name:
        response = api.post("/v1/attachments/upload", json={"content": "aGk=", "filename": name})
    else:
        response = api.post("/v1/attachments/upload", content=b"hi", headers={"X-Filename": name})
    assert response.status_code in (201, 400), response.text
    if response.status_code == 201:
        stored = response.json()["data"]["filename"]
        assert not any(c in stored for c in "/\\\r\n\0") and ".." not in stored, stored


def _send_body(inbox: dict, target: str) -> dict:
    return {"to": [target], "subject": "hello", "text": "body", "inboxId": inbox["id"]}


INJECTIONS = [
    ("subject", "hi\r\nBcc: victim@example.com"),
    ("subject", "hi\nBcc: victim@example.com"),
    ("to", ["{target}\r\nBcc: victim@example.com"]),
    ("reply_to", ["{target}\r\nX-Evil: 1"]),
    ("from", "Evil\r\nBcc: victim@example.com <{sender}>"),
    ("headers", {"X-Tag": "a\r\nBcc: victim@example.com"}),
    ("headers", {"X-Tag\r\nBcc": "victim@example.com"}),
    ("headers", {"X-Tag": "a\x00b"}),
]


@pytest.mark.parametrize(("field", "value"), INJECTIONS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INJECTIONS)])
def test_line_breaks_in_anything_that_reaches_a_header_are_refused(api, inbox: dict, field: str,
                                                                   value: object) -> None:
    target = make_inbox(api)
    body = _send_body(inbox, target["address"])
    text = json.dumps(value).replace("{target}", target["address"]).replace("{sender}", inbox["address"])
    body[field] = json.loads(text)
    response = api.post("/v1/messages/send", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    for box in (inbox, target):
        listed = api.get("/v1/messages", params={"inbox_id": box["id"], "direction": "all"}).json()
        assert listed["data"] == [], listed


@pytest.mark.parametrize("field", ["cc", "bcc"])
def test_hostile_extra_recipients_are_refused_and_never_reach_the_message(api, inbox: dict,
                                                                          field: str) -> None:
    target = make_inbox(api)
    hostile = f"{target['address']}\r\nBcc: victim@example.com"
    response = api.post("/v1/messages/send", json={**_send_body(inbox, target["address"]), field: [hostile]})
    # A control character in any address field refuses the whole send (issue 12, item 10).
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"Invalid request: {field}:")
    received = api.get("/v1/messages", params={"inbox_id": target["id"]}).json()["data"]
    assert received == []


@pytest.mark.parametrize("name", ["Evil\r\nBcc: victim@example.com", "Evil\nX: y", "Tab\there", "Nul\x00"])
def test_inbox_display_names_with_control_characters_are_refused(api, inbox: dict, name: str) -> None:
    created = api.post("/v1/inboxes", json={"local_part": "ctl" + inbox["id"][:8], "name": name})
    assert created.status_code == 400 and "name" in created.json()["error"], created.text
    patched = api.patch(f"/v1/inboxes/{inbox['id']}", json={"name": name})
    assert patched.status_code == 400 and "name" in patched.json()["error"], patched.text
    assert api.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["displayName"] == inbox["displayName"]


def _download(api: httpx.Client, attachment_id: str) -> httpx.Response:
    """Fetch a signed download link, then the file: both must be answered (the client's timeout is 30 s)."""
    url = api.get(f"/v1/attachments/{attachment_id}/url").json()["data"]["url"]
    return api.get(url)


@pytest.mark.parametrize("mime_type", ["application/x日本", "text/plain\r\n X-Evil: 1", "text/plain\r\nX-Evil: 1"])
def test_a_hostile_upload_type_downloads_promptly_with_a_safe_content_type(api, mime_type: str) -> None:
    uploaded = api.post("/v1/attachments/upload", json={"content": "aGk=", "filename": "a.bin",
                                                        "mime_type": mime_type})
    assert uploaded.status_code == 201, uploaded.text
    for _ in range(20):
        response = _download(api, uploaded.json()["data"]["attachment_id"])
        assert response.status_code == 200 and response.content == b"hi"
        assert response.headers["content-type"] == "application/octet-stream"
        assert "x-evil" not in response.headers
    assert api.get("/health").status_code == 200
    assert uploaded.json()["data"]["mime_type"] == "application/octet-stream"


MAIL_TYPES = [b"application/caf\xc3\xa9", b"text/\r\n plain", b"text/plain\r\n\tX-Evil: 1"]


def test_hostile_types_in_mail_download_promptly_with_a_safe_content_type(running, api) -> None:
    inbox = make_inbox(api)
    parts = b"".join(
        b"--b\r\nContent-Type: " + mime_type + b"\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\n\r\n"
        b"part %d\r\n" % (number, number) for number, mime_type in enumerate(MAIL_TYPES))
    raw = (b"From: a@sender.example\r\nTo: " + inbox["address"].encode() + b"\r\nSubject: types\r\n"
           b"Message-ID: <types@sender.example>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as client:
        client.sendmail("a@sender.example", [inbox["address"]], raw)
    [stored] = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert len(stored["attachments"]) == len(MAIL_TYPES)
    for attachment_id in stored["attachments"]:
        for _ in range(7):
            response = _download(api, attachment_id)
            assert response.status_code == 200 and response.content.startswith(b"part ")
            assert response.headers["content-type"].isascii() and "x-evil" not in response.headers
    assert api.get("/health").status_code == 200
