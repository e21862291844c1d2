"""Hostile MIME through the real SMTP listener: every message is stored or refused with an SMTP code.

Hand-made nasties (broken boundaries, unknown charsets, invalid base64 and quoted-printable, 10 000
headers, deep multipart nesting, NUL and 8-bit bytes, missing Date/From/Message-ID, enormous lines)
and Hypothesis-built messages go through smtplib over loopback. A `250` must mean the message is
listed by the API; any refusal must be a proper 4xx/5xx reply. The server stays healthy throughout.
"""

from __future__ import annotations

import re
import smtplib
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mailtools import make_inbox

SENDER = "fuzzer@example.net"


class Delivery:
    """One SMTP connection reused across messages, reopened when the server drops it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.smtp: smtplib.SMTP | None = None

    def send(self, raw: bytes, to: str) -> tuple[int, str]:
        """`(code, text)` of the reply to DATA (or to whichever command refused the message)."""
        if self.smtp is None:
            self.smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
            self.smtp.ehlo("fuzzer.example")
        try:
            self.smtp.sendmail(SENDER, [to], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode("utf-8", "replace")
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return code, text.decode("utf-8", "replace")
        except smtplib.SMTPServerDisconnected:
            self.smtp = None
            return 421, "disconnected"
        return 250, "OK"

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except smtplib.SMTPException:
                pass


def _multipart(boundary: str, parts: list[bytes], close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


def _nested(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\ndeep inside\r\n"
    for level in range(depth):
        boundary = f"b{level}"
        inner = (f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n".encode()
                 + _multipart(boundary, [inner]))
    return inner


HEAD = b"From: Fuzzer <fuzzer@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n"

HOSTILE: dict[str, bytes] = {
    "unterminated-boundary": b"Content-Type: multipart/mixed; boundary=zzz\r\n\r\n--zzz\r\n"
                             b"Content-Type: text/plain\r\n\r\nnever closed\r\n",
    "boundary-never-used": b"Content-Type: multipart/alternative; boundary=absent\r\n\r\njust text\r\n",
    "multipart-without-boundary": b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n--x--\r\n",
    "unknown-charset": b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\ncaf\xe9 \xff\xfe\r\n",
    "lying-utf8": b"Content-Type: text/plain; charset=utf-8\r\n\r\n\xc3\x28 \xa0\xa1 \xf0\x28\x8c\x28\r\n",
    "utf7-html": b"Content-Type: text/html; charset=utf-7\r\n\r\n+ADw-script+AD4-alert(1)+ADw-/script+AD4-\r\n",
    "invalid-base64": b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!@@@###===\r\n",
    "invalid-base64-attachment": b"Content-Type: multipart/mixed; boundary=q\r\n\r\n" + _multipart("q", [
        b"Content-Type: text/plain\r\n\r\nsee attached",
        b"Content-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x*not*base64$$$",
    ]),
    "invalid-quoted-printable": b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable"
                                b"\r\n\r\n=ZZ =4 =\r\n=E9=C3=\r\n",
    "unknown-transfer-encoding": b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-rot13\r\n\r\nuryyb\r\n",
    "ten-thousand-headers": b"".join(b"X-Filler-%d: value %d\r\n" % (i, i) for i in range(10_000))
                            + b"\r\nbody after many headers\r\n",
    "deep-nesting": _nested(300),
    "nul-bytes": b"X-Nul: a\x00b\r\nContent-Type: text/plain\r\n\r\nbody\x00with\x00nuls\r\n",
    "eight-bit-headers": b"X-Latin: caf\xe9\r\nX-Utf8: \xe2\x98\x83 snow\r\n\r\n8-bit headers\r\n",
    "garbage-encoded-words": b"X-Words: =?utf-8?B?!!!?= =?x-bogus?Q?caf=E9?= =?utf-8?Q?=FF?=\r\n\r\nwords\r\n",
    "hostile-attachment-name": b"Content-Type: multipart/mixed; boundary=n\r\n\r\n" + _multipart("n", [
        b"Content-Type: text/plain\r\n\r\nname check",
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
        b"filename=\"=?utf-8?Q?..=2F..=2Fetc=2Fpasswd=0D=0AX-Evil=3A_1?=\"\r\n\r\nroot:x:0:0",
    ]),
    "non-ascii-content-types": b"Content-Type: multipart/mixed; boundary=t\r\n\r\n" + _multipart("t", [
        b"Content-Type: text/plain\r\n\r\ntypes check",
        b"Content-Type: application/caf\xc3\xa9\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\na",
        b"Content-Type: application/x\xe6\x97\xa5\xe6\x9c\xac\r\nContent-Disposition: attachment\r\n\r\nb",
        b"Content-Type: application/x\r\n pdf\r\nContent-Disposition: attachment\r\n\r\nc",
        b"Content-Type: image/png\r\n\tX-Evil: 1\r\nContent-Disposition: attachment\r\n\r\nd",
    ]),
    "long-header-line": b"X-Long: " + b"a" * 200_000 + b"\r\n\r\nlong header\r\n",
    "enormous-body-line": b"Content-Type: text/plain\r\n\r\n" + b"b" * 3_000_000 + b"\r\n",
    "empty-body": b"\r\n",
    "no-header-separator": b"this line is not a header and there is no blank line",
    "mbox-from-line": b"From nobody Mon Jan  1 00:00:00 2024\r\n\r\nbody\r\n",
}
# Messages that also drop From (and so Date/Message-ID) entirely.
BARE = {
    "missing-date-from-message-id": b"Subject: nothing else\r\n\r\nno From, no Date, no Message-ID\r\n",
    "headers-only-garbage": b"\xff\xfe\xfd: \x80\x81\r\n\r\n",
}


@pytest.fixture(scope="module")
def mailbox(running) -> dict:
    """An inbox, with the key of its organisation under `key`."""
    key = running.new_key()
    with running.client(key) as api:
        return {**make_inbox(api), "key": key}


@pytest.fixture(scope="module")
def delivery(running) -> Delivery:
    sender = Delivery(running.server.smtp_port)
    yield sender
    sender.close()


def _stored_count(running, inbox: dict) -> int:
    inbox_id = inbox["id"]
    with running.client(inbox["key"]) as api:
        total, cursor = 0, None
        while True:
            params = {"inbox_id": inbox_id, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = api.get("/v1/messages", params=params).json()
            total += len(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return total


def _assert_outcome(running, inbox: dict, code: int, text: str, before: int) -> None:
    after = _stored_count(running, inbox)
    if code == 250:
        assert after == before + 1, "a 250 must mean the message is stored"
    else:
        assert 400 <= code < 600 and code != 421, (code, text)
        assert after == before, "a refused message must not be stored"
    with running.client("") as anonymous:
        assert anonymous.get("/health").status_code == 200


@pytest.mark.parametrize("name", [*HOSTILE, *BARE])
def test_hostile_message_is_stored_or_refused(running, mailbox: dict, delivery: Delivery, name: str) -> None:
    before = _stored_count(running, mailbox)
    if name in HOSTILE:
        head = HEAD.replace(b"{to}", mailbox["address"].encode()).replace(b"{subject}", name.encode())
        raw = head + b"Message-ID: <" + name.encode() + b"@fuzz.example>\r\n" + HOSTILE[name]
    else:
        raw = BARE[name]
    code, text = delivery.send(raw, mailbox["address"])
    _assert_outcome(running, mailbox, code, text, before)


def test_stored_hostile_messages_read_back_safely(running, mailbox: dict, delivery: Delivery) -> None:
    """The API answers for what was stored: JSON that parses, no NULs, names and MIME types neutralised."""
    head = HEAD.replace(b"{to}", mailbox["address"].encode()).replace(b"{subject}", b"readback")
    for name in ("hostile-attachment-name", "non-ascii-content-types"):
        code, _ = delivery.send(head + HOSTILE[name], mailbox["address"])
        assert code == 250
    with running.client(mailbox["key"]) as api:
        messages = api.get("/v1/messages", params={"inbox_id": mailbox["id"], "limit": 1000}).json()["data"]
        for message in messages:
            assert "\x00" not in message["content"]
            for attachment_id in message["attachments"]:
                attachment = api.get(f"/v1/attachments/{attachment_id}").json()["data"]
                name = attachment["filename"]
                assert not any(c in name for c in "/\\\r\n\0") and ".." not in name, name
                assert re.fullmatch(r"[a-z0-9!#$%&'*+.^_`{|}~-]+/[a-z0-9!#$%&'*+.^_`{|}~-]+", attachment["mime_type"])


HEADER_NAMES = st.sampled_from(["Subject", "From", "To", "Cc", "Date", "In-Reply-To",
                                "References", "Content-Type", "Content-Transfer-Encoding",
                                "Content-Disposition", "X-Random"])
HEADER_VALUES = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"multipart/mixed; boundary=\"zz\"", b"text/plain; charset=\"x-bad\"", b"base64",
                     b"quoted-printable", b"attachment; filename=\"../../x\"", b"=?utf-8?B?////?=",
                     b"<a@b> <c@d", b"Mon, 99 Foo 20000 99:99:99 +9999"]),
)
BODY = st.one_of(
    st.binary(max_size=4000),
    st.lists(st.sampled_from([b"--zz", b"--zz--", b"Content-Type: text/html", b"", b"=E9=", b"QUJD", b"\x00"]),
             max_size=40).map(b"\r\n".join),
)


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=25), body=BODY)
def test_generated_messages_are_stored_or_refused(running, mailbox: dict, delivery: Delivery,
                                                  headers: list[tuple[str, bytes]], body: bytes) -> None:
    # A fresh Message-ID each time: a repeated one is a retry, and a retry is not stored twice.
    raw = b"Message-ID: <%s@fuzz.example>\r\n" % uuid.uuid4().hex.encode()
    raw += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body
    before = _stored_count(running, mailbox)
    code, text = delivery.send(raw, mailbox["address"])
    _assert_outcome(running, mailbox, code, text, before)


def test_a_normal_message_still_arrives_after_the_fuzzing(running, mailbox: dict) -> None:
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [mailbox["address"]],
                      b"From: a@example.net\r\nTo: " + mailbox["address"].encode()
                      + b"\r\nSubject: still fine\r\n\r\nhello\r\n")
    with running.client(mailbox["key"]) as api:
        messages = api.get("/v1/messages", params={"inbox_id": mailbox["id"], "limit": 5}).json()["data"]
    assert messages[0]["metadata"]["subject"] == "still fine"
