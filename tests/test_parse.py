"""MIME parsing of mail from strangers: what decodes is kept, nothing raises."""

from __future__ import annotations

from dataclasses import asdict
from email.message import EmailMessage, Message

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.mail.content_type import safe_content_type
from backend.mail.parse import from_parsed, full_parse, parse_message, single_part
from backend.mail.render import snippet
from tests.test_fuzz_mime import BARE, HOSTILE


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


def _single_part_corpus() -> list[bytes]:
    """Plain mail as clients write it, and the ways a header block or body can be odd or broken."""
    plain = EmailMessage()
    plain["From"], plain["To"], plain["Subject"] = "Ann <ann@example.net>", "b@x.test", "Grüße"
    plain.set_content("Hallo Wélt\n" * 50)
    html = EmailMessage()
    html["From"] = "c@example.net"
    html.set_content("<p>Hi</p>", subtype="html")
    head = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: s\r\n"
    return [
        plain.as_bytes().replace(b"\n", b"\r\n"), html.as_bytes().replace(b"\n", b"\r\n"),
        head + b"\r\nbody\r\n.\r\nmore\r\n", head + b"\r\n", head + b"\r\n\r\n\r\nafter blank lines",
        head + b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft=ZZ\r\n",
        head + b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\nY2Fm6Q==\r\n",
        head + b"Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n\r\nline \r\nbare\nlf\rcr\r\n",
        head + b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF",
        head + b"Content-Type: text/plain; name=\"notes.txt\"\r\n\r\nnamed text is an attachment",
        head + b"Content-Type: text\r\n\r\nno subtype", head + b"Content-Type: \xff/\xfe\r\n\r\n8-bit type",
        head + b"Content-Type: MULTIPART/Mixed; boundary=b\r\n\r\n--b\r\nx\r\n--b--\r\n",
        head + b"Content-Type: message/rfc822\r\n\r\nFrom: inner@x.test\r\n\r\ninner body\r\n",
        head + b"Subject: folded\r\n  over\r\n\tlines\r\n\r\nbody", head + b" leading continuation\r\n\r\nx",
        b"Subject: a\r\nFrom a@b.test misplaced\r\n\r\nbody", b"From nobody Mon Jan  1 2024\r\nSubject: u\r\n\r\nb",
        b": empty name\r\nSubject: x\r\n\r\nbody", b"Subject: x\r\nnot a header line\r\n\r\nbody",
        b"Subject: x\nTo: lf@only.test\n\nbody", b"Subject: x\r\nTo: mixed\n@x.test\r\n\r\nbody",
        b"Subject: x\rY: z\r\n\r\nbody", b"\r\n\r\nstarts blank", b"Subject: no body at all\r\n\r\n",
        b"Subject: \xe9\r\nFrom: \xff <a@b.test>\r\n\r\n\xe9t\xe9 \x80", b"Subject: x\x0b\x0cy\x1c\r\n\r\nb\x1d\x1e",
        head + b"Content-Type: text/html; charset=utf-7\r\n\r\n+ADw-b+AD4-",
        *HOSTILE.values(), *BARE.values(),
    ]


def _same(raw: bytes, fast: Message) -> None:
    full = full_parse(raw)
    assert fast.items() == full.items()
    assert fast.get_unixfrom() == full.get_unixfrom()
    assert fast.get_payload() == full.get_payload()
    assert [type(d) for d in fast.defects] == [type(d) for d in full.defects]
    mine, theirs = (asdict(from_parsed(m, raw, "env@x.test", "mx.test")) for m in (fast, full))
    if b"message-id:" not in raw.lower():
        mine.pop("smtp_message_id"), theirs.pop("smtp_message_id")  # generated: random either way
    assert mine == theirs


def test_single_part_path_gives_what_the_full_parser_gives() -> None:
    taken = 0
    for raw in _single_part_corpus():
        raw = raw.replace(b"\x00", b"")
        fast = single_part(raw)
        if fast is not None:
            taken += 1
            _same(raw, fast)
    # The shortcut must be taken for ordinary mail, or this test proves nothing.
    assert taken >= 25


@settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(headers=st.lists(st.tuples(
    st.sampled_from([b"From", b"To", b"Subject", b"Content-Type", b"Content-Transfer-Encoding", b"X-A", b"From ",
                     b"Content-Disposition", b" folded", b"bad line", b""]),
    st.sampled_from([b"text/plain; charset=utf-8", b"multipart/mixed; boundary=z", b"message/rfc822", b"base64",
                     b"quoted-printable", b"attachment; filename=f", b"a@b.test", b"\xe9\xff", b"x\ry", b"x\ny",
                     b"=?utf-8?q?caf=C3=A9?=", b""])), max_size=8),
    body=st.binary(max_size=300), separator=st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_single_part_path_matches_on_generated_messages(headers: list[tuple[bytes, bytes]], body: bytes,
                                                        separator: bytes) -> None:
    raw = b"".join(name + b": " + value + separator for name, value in headers) + separator + body
    raw = raw.replace(b"\x00", b"")
    fast = single_part(raw)
    if fast is not None:
        _same(raw, fast)


@pytest.mark.parametrize("text", [
    "", "   \n\t ", "short", "word " * 39 + "wordy", "word " * 40, "x" * 199, "x" * 200, "x" * 201, "x" * 5000,
    " lead  and \n\n gaps " * 100, "a" * 198 + "  " + "b" * 300, ("z" * 50 + " " * 500) * 10, "\u2003sp\u3000" * 300,
])
def test_snippet_of_a_prefix_equals_the_snippet_of_the_whole(text: str) -> None:
    flat = " ".join(text.split())
    expected = flat if len(flat) <= 200 else flat[:199].rstrip() + "…"
    assert snippet(text) == expected
    assert snippet(text, "<p>from html</p>") == (expected or "from html")
