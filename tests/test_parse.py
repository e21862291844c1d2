"""MIME parsing of mail from strangers: what decodes is kept, nothing raises."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from backend.mail.content_type import safe_content_type
from backend.mail.parse import parse_message


def test_plain_message_fields() -> None:
    raw = (
        b"From: \"Ann Lee\" <Ann@Example.NET>\r\nTo: a@b.test, \"Bob\" <BOB@b.test>\r\nCc: c@d.test\r\n"
        b"Subject: Hello\r\nMessage-ID: <m1@example.net>\r\nIn-Reply-To: <p@q>\r\n"
        b"References: <o@q>\r\n <p@q>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\n\r\nBody text\r\n"
    )
    msg = parse_message(raw, "bounce@example.net", "mx.test")
    assert msg.sender == "ann@example.net"
    assert msg.sender_name == "Ann Lee"
    assert msg.to == ["a@b.test", "bob@b.test"]
    assert msg.cc == ["c@d.test"]
    assert msg.subject == "Hello"
    assert msg.text.strip() == "Body text"
    assert msg.smtp_message_id == "<m1@example.net>"
    assert msg.in_reply_to == "<p@q>"
    assert msg.references == ["<o@q>", "<p@q>"]
    assert msg.date == "2024-01-01T09:00:00.000Z"
    assert msg.raw == raw


def test_multipart_with_attachment_and_encoded_words() -> None:
    mail = EmailMessage()
    mail["From"] = "Jürgen <j@example.de>"
    mail["To"] = "x@y.test"
    mail["Subject"] = "Grüße – 你好"
    mail.set_content("Hallo Wélt")
    mail.add_alternative("<p>Hallo Wélt</p>", subtype="html")
    mail.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="../../etc/report.pdf")
    msg = parse_message(mail.as_bytes(), "", "mx.test")
    assert msg.subject == "Grüße – 你好"
    assert msg.sender_name == "Jürgen"
    assert msg.text.strip() == "Hallo Wélt"
    assert msg.html is not None and "<p>Hallo Wélt</p>" in msg.html
    [att] = msg.attachments
    assert att.filename == "report.pdf"
    assert att.mime_type == "application/pdf"
    assert att.content == b"%PDF-1.4 data"


def test_missing_headers_fall_back_to_envelope_and_generated_id() -> None:
    msg = parse_message(b"just a body", "Env@Sender.Test", "mx.commune.test")
    assert msg.sender == "env@sender.test"
    assert msg.smtp_message_id is not None and msg.smtp_message_id.endswith("@mx.commune.test>")
    assert msg.text == "just a body"


def test_undeclared_8bit_body_is_read_as_utf8() -> None:
    msg = parse_message("From: a@b.test\r\nSubject: x\r\n\r\nnaïve café\r\n".encode(), "", "h")
    assert "naïve café" in msg.text


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage \x00",
    b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"zzz\"\r\n\r\n--yyy\r\nbody\r\n",
    b"From: a@b.test\r\nContent-Type: text/plain; charset=no-such-charset\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
    b"From: \xff\xfe <a@b.test>\r\nSubject: \xe9t\xe9\r\nX-Huge: " + b"a" * 300_000 + b"\r\n\r\nbody",
    b"Date: not a date\r\nMessage-ID: no brackets\r\nFrom: <>\r\nTo: ,,,@@@\r\n\r\n",
    b"From: a@b.test\r\nContent-Type: multipart/mixed\r\n\r\nno boundary at all",
])
def test_broken_messages_never_raise(raw: bytes) -> None:
    msg = parse_message(raw, "env@x.test", "mx.test")
    assert msg.sender
    assert msg.smtp_message_id
    assert "\x00" not in msg.text


def test_broken_boundary_keeps_the_text() -> None:
    raw = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"zzz\"\r\n\r\n--yyy\r\nthe words\r\n"
    assert "the words" in parse_message(raw, "", "h").text


def test_html_only_keeps_html() -> None:
    raw = b"From: a@b.test\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<b>Hi</b> there"
    msg = parse_message(raw, "", "h")
    assert msg.html == "<b>Hi</b> there"


def test_attachment_count_is_capped_but_raw_is_kept() -> None:
    parts = b"".join(b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(2000))
    raw = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    msg = parse_message(raw, "", "h")
    assert len(msg.attachments) == 500
    assert msg.raw == raw


@pytest.mark.parametrize(("value", "expected"), [
    ("application/pdf", "application/pdf"),
    ("Application/PDF; name=\"a.pdf\"", "application/pdf"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("image/svg+xml;\r\n charset=utf-8", "image/svg+xml"),
    ("  text/plain  ", "text/plain"),
    ("application/caf\u00e9", "application/octet-stream"),
    ("application/caf\udcc3\udca9", "application/octet-stream"),  # raw 8-bit bytes as the parser hands them on
    ("application/x\u65e5\u672c", "application/octet-stream"),
    ("application/\u212a", "application/octet-stream"),  # the Kelvin sign lowercases to an ASCII k
    ("application/x\r\n pdf", "application/octet-stream"),
    ("text/html\r\nX-Injected: 1", "application/octet-stream"),
    ("application/x\x00y", "application/octet-stream"),
    ("image/png (a comment)", "application/octet-stream"),
    ("=?utf-8?q?application/x?=", "application/octet-stream"),
    ("application", "application/octet-stream"),
    ("application/", "application/octet-stream"),
    ("/pdf", "application/octet-stream"),
    ("a/b/c", "application/octet-stream"),
    ("application/" + "x" * 128, "application/octet-stream"),
    ("", "application/octet-stream"),
    (None, "application/octet-stream"),
])
def test_safe_content_type(value: str | None, expected: str) -> None:
    assert safe_content_type(value) == expected


@pytest.mark.parametrize("header", [
    b"application/caf\xc3\xa9",
    "application/x\u65e5\u672c".encode(),
    b"application/x\r\n pdf",
    b"application/pdf\x01; junk;;; =",
])
def test_attachment_types_from_mail_are_ascii_tokens(header: bytes) -> None:
    raw = (b"From: a@example.net\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
           b"--zz\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
           b"--zz\r\nContent-Type: " + header + b"\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\n"
           b"data\r\n--zz--\r\n")
    [attachment] = parse_message(raw).attachments
    assert attachment.mime_type == "application/octet-stream"
    assert attachment.content == b"data"
