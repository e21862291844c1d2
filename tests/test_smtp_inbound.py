"""Mail from the outside world over real SMTP into our listener, read back through the API."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backend.smtp.inbound import read_data
from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.smtp_sink import wait_until


def smtp(running: Running) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10)


def messages(api: httpx.Client, inbox_id: str) -> list[dict]:
    response = api.get("/v1/messages", params={"inbox_id": inbox_id, "order": "asc"})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def in_threads(target: Callable[[int], None], count: int) -> None:
    """`target(0)` … `target(count - 1)` at the same time, each in its own thread; returns when all are done."""
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def mail(sender: str, to: str, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def test_plain_message_is_filed_and_readable(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    with smtp(running) as client:
        code, banner = client.ehlo("sender.example")
        assert code == 250 and b"SIZE" in banner and b"8BITMIME" in banner and b"SMTPUTF8" in banner
        refused = client.send_message(mail("Ann <ann@sender.example>", inbox["address"], "Hello", "First words",
                                           Message_ID="<plain-1@sender.example>"))
    assert refused == {}
    [stored] = messages(api, inbox["id"])
    assert stored["direction"] == "inbound"
    assert stored["content"].strip() == "First words"
    assert stored["metadata"]["subject"] == "Hello"
    assert stored["metadata"]["message_id"] == "<plain-1@sender.example>"
    assert {"role": "sender", "identity": "ann@sender.example"} in stored["participants"]
    services = running.server.services
    raw = running.run(lambda: services.blobs.get(*services.database.one(
        "SELECT org_id, raw_sha256 FROM messages WHERE id = ?", (stored["id"],))))
    assert raw.startswith(b"Received: from sender.example ([127.0.0.1])\r\n\tby mx.commune.test (Commune) with ESMTP")
    assert b"Message-ID: <plain-1@sender.example>" in raw


def test_multipart_with_attachment_and_non_ascii(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    message = mail("Jürgen Groß <jurgen@sender.example>", inbox["address"], "Grüße aus Köln – 你好", "Hallo Wélt ✓")
    message.add_alternative("<p>Hallo <b>Wélt</b> ✓</p>", subtype="html")
    message.add_attachment(b"\x89PNG\r\n binary \x00 data", maintype="image", subtype="png",
                           filename="../secret/bild ü.png")
    with smtp(running) as client:
        client.send_message(message)
    [stored] = messages(api, inbox["id"])
    assert stored["metadata"]["subject"] == "Grüße aus Köln – 你好"
    assert "Hallo Wélt ✓" in stored["content"]
    assert "<b>Wélt</b>" in stored["content_html"]
    [attachment_id] = stored["attachments"]
    attachment = api.get(f"/v1/attachments/{attachment_id}").json()["data"]
    assert attachment["filename"] == "bild ü.png"
    assert attachment["mime_type"] == "image/png"
    assert attachment["size"] == len(b"\x89PNG\r\n binary \x00 data")
    assert attachment["source"] == "email"


def test_smtputf8_address_and_8bit_body(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    raw = (f"From: josé@exämple.test\r\nTo: {inbox['address']}\r\nSubject: ½ price\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nçà et là\r\n")
    with smtp(running) as client:
        client.ehlo()
        client.sendmail("josé@exämple.test", [inbox["address"]], raw.encode(), mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    [stored] = messages(api, inbox["id"])
    assert "çà et là" in stored["content"]
    assert stored["metadata"]["subject"] == "½ price"


def test_reply_joins_the_thread_of_the_original(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    with smtp(running) as client:
        client.send_message(mail("a@sender.example", inbox["address"], "Order 17", "Where is it?",
                                 Message_ID="<order17@sender.example>"))
        client.send_message(mail("b@other.example", inbox["address"], "Unrelated", "Hi",
                                 Message_ID="<other@other.example>"))
        client.send_message(mail("a@sender.example", inbox["address"], "Re: Order 17", "Still waiting",
                                 Message_ID="<order17-2@sender.example>", In_Reply_To="<order17@sender.example>",
                                 References="<order17@sender.example>"))
    first, other, reply = messages(api, inbox["id"])
    assert reply["thread_id"] == first["thread_id"]
    assert other["thread_id"] != first["thread_id"]
    assert reply["metadata"]["in_reply_to"] == "<order17@sender.example>"


def test_unknown_recipient_and_relay_attempts_are_refused(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    domain = inbox["address"].split("@")[1]
    with smtp(running) as client:
        client.ehlo()
        client.mail("spammer@evil.example")
        assert client.rcpt(f"nobody-here@{domain}")[0] == 550
        assert client.rcpt("victim@gmail.example")[0] == 550
        assert client.rcpt(inbox["address"])[0] == 250
        client.rset()
    with smtp(running) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail("spammer@evil.example", ["victim@gmail.example"], b"Subject: relay\r\n\r\nx")


def test_paused_inbox_defers_and_disabled_inbox_refuses(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    path = f"/v1/inboxes/{inbox['id']}"
    for status, code in [("paused", 450), ("disabled", 550), ("active", 250)]:
        assert api.patch(path, json={"status": status}).status_code == 200
        with smtp(running) as client:
            client.ehlo()
            client.mail("someone@sender.example")
            assert client.rcpt(inbox["address"])[0] == code, status
            client.rset()
    assert messages(api, inbox["id"]) == []


def test_retry_after_lost_250_is_acknowledged_without_a_duplicate(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    message = mail("a@sender.example", inbox["address"], "Once", "Only once", Message_ID="<once@sender.example>")
    with smtp(running) as client:
        assert client.send_message(message) == {}
        assert client.send_message(message) == {}
    assert len(messages(api, inbox["id"])) == 1


def test_envelope_recipients_decide_the_inboxes(running: Running, api: httpx.Client) -> None:
    first, second = make_inbox(api), make_inbox(api)
    message = mail("a@sender.example", "list@lists.example", "To the list", "Bcc'd to us")
    with smtp(running) as client:
        client.send_message(message, to_addrs=[first["address"], second["address"]])
    assert len(messages(api, first["id"])) == 1
    assert len(messages(api, second["id"])) == 1


def test_inbox_deleted_between_rcpt_and_data_gets_no_250_and_no_rows(running: Running, api: httpx.Client) -> None:
    """RCPT's lookup files the message; the commit still refuses an inbox deleted since then."""
    kept, doomed, alone = make_inbox(api), make_inbox(api), make_inbox(api)
    raw = b"From: a@sender.example\r\nSubject: Late\r\nMessage-ID: <late-1@sender.example>\r\n\r\nhello\r\n"
    with smtp(running) as both, smtp(running) as single:
        both.ehlo()
        single.ehlo()
        both.mail("a@sender.example")
        assert both.rcpt(kept["address"])[0] == 250
        assert both.rcpt(doomed["address"])[0] == 250
        single.mail("a@sender.example")
        assert single.rcpt(alone["address"])[0] == 250
        for inbox in (doomed, alone):
            assert api.delete(f"/v1/domains/{inbox['domain_id']}/inboxes/{inbox['id']}").status_code == 200
        code, reply = both.data(raw)
        assert code == 250, reply
        code, reply = single.data(raw)
        assert code == 550, reply
    assert [m["metadata"]["message_id"] for m in messages(api, kept["id"])] == ["<late-1@sender.example>"]
    database = running.server.services.database
    for inbox in (doomed, alone):
        counts = running.run(lambda inbox_id=inbox["id"]: [database.one(
            f"SELECT COUNT(*) FROM {table} WHERE inbox_id = ?", (inbox_id,))[0] for table in ("messages", "threads")])
        assert counts == [0, 0]


@pytest.mark.parametrize("raw", [
    b"no headers at all, just text",
    b"From: a@sender.example\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--yy\r\nbroken\r\n",
    b"From: \xff\xfe <a@sender.example>\r\nSubject: \xe9\r\nContent-Type: text/plain; charset=bogus\r\n\r\n\xe9t\xe9",
])
def test_broken_messages_are_stored_with_what_decodes(running: Running, api: httpx.Client, raw: bytes) -> None:
    inbox = make_inbox(api)
    with smtp(running) as client:
        assert client.sendmail("envelope@sender.example", [inbox["address"]], raw) == {}
    [stored] = messages(api, inbox["id"])
    assert stored["participants"][0]["identity"] in ("a@sender.example", "envelope@sender.example")
    assert stored["metadata"]["message_id"]


def test_concurrent_sessions_are_all_committed_before_250(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    failures: list[BaseException] = []

    def deliver(n: int) -> None:
        try:
            with smtp(running) as client:
                for i in range(5):
                    client.send_message(mail("a@sender.example", inbox["address"], f"Load {n}-{i}", "x",
                                             Message_ID=f"<load-{n}-{i}@sender.example>"))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    in_threads(deliver, 8)
    assert failures == []
    response = api.get("/v1/messages", params={"inbox_id": inbox["id"], "limit": 100}).json()
    assert len(response["data"]) == 40


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.commune.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_limits_and_starttls_on_a_configured_server(tmp_path: Path, dns_server, engine) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server(tmp_path / "data", dns_server, max_message_bytes=20_000, max_recipients=2,
                          smtp_tls_cert=cert, smtp_tls_key=key, engine=engine)
    try:
        with server.client(server.new_key()) as api:
            boxes = [make_inbox(api) for _ in range(3)]
            with smtp(server) as client:
                code, features = client.ehlo()
                assert b"SIZE 20000" in features and b"STARTTLS" in features
                client.starttls(context=ssl._create_unverified_context())
                client.ehlo()
                client.mail("a@sender.example")
                assert client.rcpt(boxes[0]["address"])[0] == 250
                assert client.rcpt(boxes[1]["address"])[0] == 250
                assert client.rcpt(boxes[2]["address"])[0] == 452
                assert client.data(b"Subject: two of three\r\n\r\nhello")[0] == 250
                with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
                    client.sendmail("a@sender.example", [boxes[2]["address"]], b"Subject: big\r\n\r\n" + b"x" * 30_000)
                assert too_big.value.smtp_code == 552
                # Without a SIZE announcement the limit is enforced while the data arrives.
                client.mail("a@sender.example")
                client.rcpt(boxes[2]["address"])
                assert client.data(b"Subject: big\r\n\r\n" + b"y" * 30_000)[0] == 552
                assert client.noop()[0] == 250
            assert len(messages(api, boxes[0]["id"])) == 1
            assert len(messages(api, boxes[1]["id"])) == 1
            assert messages(api, boxes[2]["id"]) == []
    finally:
        server.stop()


def test_dot_stuffed_lines_arrive_intact(running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    body = ".starts with a dot\n.\n..two dots\nend"
    with smtp(running) as client:
        client.send_message(mail("a@sender.example", inbox["address"], "Dots", body))
    [stored] = messages(api, inbox["id"])
    assert stored["content"].replace("\r\n", "\n").strip() == body


def test_data_end_split_across_reads() -> None:
    async def read(*pieces: bytes, limit: int | None = None) -> bytes | None:
        reader = asyncio.StreamReader()
        for piece in pieces:
            reader.feed_data(piece)
        return await read_data(reader, limit)

    assert asyncio.run(read(b"Subject: x\r\n\r\nhi\r\n.", b"\r\n")) == b"Subject: x\r\n\r\nhi\r\n"
    assert asyncio.run(read(b".\r\n")) == b""
    assert asyncio.run(read(b"..lead\r\n.\r\n")) == b".lead\r\n"
    assert asyncio.run(read(b"a" * 50 + b"\r\n", b"b" * 50 + b"\r\n.\r\n", limit=60)) is None


def test_connection_cap_refuses_with_421_and_recovers(tmp_path: Path, dns_server, engine) -> None:
    server = start_server(tmp_path, dns_server, max_connections=3, engine=engine)
    try:
        held = [smtp(server) for _ in range(3)]
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtp(server)
        assert refused.value.smtp_code == 421
        held.pop().quit()
        wait_until(lambda: _greets(server))
        for client in held:
            client.quit()
    finally:
        server.stop()


def _greets(server: Running) -> bool:
    try:
        with smtp(server) as client:
            return client.noop()[0] == 250
    except smtplib.SMTPConnectError:
        return False


def test_a_slow_large_message_survives_the_idle_timeout(tmp_path: Path, dns_server, engine) -> None:
    server = start_server(tmp_path, dns_server, idle_timeout=1.0, engine=engine)
    try:
        with server.client(server.new_key()) as api:
            inbox = make_inbox(api)
            with smtp(server) as client:
                client.ehlo()
                assert client.mail("a@sender.example")[0] == 250
                assert client.rcpt(inbox["address"])[0] == 250
                client.putcmd("data")
                assert client.getreply()[0] == 354
                client.send(b"Subject: slow but steady\r\n\r\n")
                # Each piece is more than the progress step, and the whole takes longer than the timeout.
                for _ in range(4):
                    client.send((b"z" * 998 + b"\r\n") * 80)
                    time.sleep(0.5)
                client.send(b".\r\n")
                assert client.getreply()[0] == 250
            [stored] = messages(api, inbox["id"])
            assert stored["metadata"]["subject"] == "slow but steady"
    finally:
        server.stop()


def test_attachment_types_that_are_not_ascii_tokens_download_as_octet_stream(
        running: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    hostile = [b"application/caf\xc3\xa9", "application/x日本".encode(), b"application/x\r\n pdf",
               b"application/pdf\r\n\tX-Injected: yes"]
    parts = b"".join(
        b"--zz\r\nContent-Type: " + value + b"\r\nContent-Disposition: attachment; filename=part" + str(n).encode()
        + b".bin\r\n\r\nbytes of part " + str(n).encode() + b"\r\n"
        for n, value in enumerate(hostile))
    raw = (b"From: a@sender.example\r\nSubject: odd types\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
           + parts + b"--zz--\r\n")
    with smtp(running) as client:
        client.ehlo()
        assert client.sendmail("a@sender.example", [inbox["address"]], raw, mail_options=["BODY=8BITMIME"]) == {}
    [stored] = messages(api, inbox["id"])
    assert len(stored["attachments"]) == len(hostile)
    for attachment_id in stored["attachments"]:
        link = api.get(f"/v1/attachments/{attachment_id}/url").json()["data"]
        # A response head that cannot be written used to leave the request unanswered: the timeout catches that.
        download = httpx.get(link["url"], timeout=10)
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/octet-stream"
        assert "x-injected" not in download.headers
        metadata = api.get(f"/v1/attachments/{attachment_id}").json()["data"]
        assert metadata["mime_type"] == "application/octet-stream"
        assert download.content == b"bytes of part " + metadata["filename"].removeprefix("part").removesuffix(".bin").encode()


def test_every_message_answered_250_is_found_by_search_at_once(running: Running, api: httpx.Client) -> None:
    """Sessions delivering at the same time share group commits; as each one hears its 250 (or a send
    its 200) the message is already in the search indexes, readable from the API's connection."""
    inbox = make_inbox(api)
    key = api.headers["authorization"].removeprefix("Bearer ")
    missing: list[str] = []

    def search(client: httpx.Client, word: str) -> int:
        found = client.get("/v1/search/threads", params={"q": word, "inbox_id": inbox["id"], "limit": 100})
        assert found.status_code == 200, found.text
        return len(found.json()["data"])

    def session(number: int) -> None:
        with smtp(running) as client, running.client(key) as reader:
            for n in range(6):
                word = f"zq{number}x{n}marker"
                client.send_message(mail("ann@sender.example", inbox["address"], f"Note {word}", f"About {word}."))
                if search(reader, word) != 1:
                    missing.append(word)

    in_threads(session, 6)
    with running.client(key) as client:
        sent = client.post("/v1/messages/send", json={"to": inbox["address"], "subject": "Sent qzsendmarker",
                                                      "text": "hello", "inboxId": inbox["id"]})
        assert sent.status_code == 200, sent.text
        assert search(client, "qzsendmarker") == 1
    assert missing == []
    assert search(api, "marker") == 37
