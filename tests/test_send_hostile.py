"""Hostile send input: address fields that try to add recipients, header text that breaks lines.

Every case goes through the real server; mail to the outside world lands in the local SMTP sink, so
what a remote server would receive (envelope and headers) is what the tests look at.
"""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from email import policy

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox, raw_of
from tests.smtp_sink import SmtpSink, wait_until

REMOTE = "remote-send.test"
EVIL = "evil-send.test"
INJECTION = f'"Bob\r\nBcc: injected@{EVIL}" <bob@{REMOTE}>'
# Characters that end a line for some reader of a header (U+2028, U+0085, VT, FF, the C0 separators),
# and other C0/C1 controls, DEL and ESC: none may reach a header.
LINE_BREAKERS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
CONTROLS = ["\x01", "\x08", "\x1b", "\x7f", "\x80", "\x9b"]


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    # Both domains accept mail, so only the server's own checks stand between a trick and delivery.
    for domain in (REMOTE, EVIL):
        dns_server.publish(domain, "MX", f"10 mx.{domain}.")
    server = start_server(tmp_path_factory.mktemp("hostile-send"), dns_server,
                          relay=f"127.0.0.1:{smtp_sink.port}", engine=engine)
    yield server
    server.stop()


def sent_to(api: httpx.Client, message_id: str) -> set[str]:
    """The recipients the outbound worker has handed the message to so far."""
    found = api.get("/v1/delivery/events", params={"message_id": message_id}).json()["data"]
    return {e["recipient"] for e in found if e["event_type"] == "sent"}


def test_a_display_name_cannot_add_a_recipient(relayed: Running, smtp_sink: SmtpSink) -> None:
    with relayed.client(relayed.new_key()) as api:
        inbox = make_inbox(api)
        for field in ("to", "cc", "bcc"):
            body = {"to": f"carol@{REMOTE}", "subject": "Hi", "text": "t", "inboxId": inbox["id"], field: [INJECTION]}
            refused = api.post("/v1/messages/send", json=body)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"].startswith(f"Invalid request: {field}:")

        quoted = api.post("/v1/messages/send", json={
            "to": f'"Bob, Bcc: injected@{EVIL}" <bob@{REMOTE}>', "subject": "Hi", "text": "t",
            "inboxId": inbox["id"]})
        assert quoted.status_code == 400 and quoted.json()["error"].startswith("Invalid request: to:")

        # Display names with commas, colons and quotes are one mailbox each, rendered quoted.
        sent = api.post("/v1/messages/send", json={
            "to": f'"Carol, Jr." <carol@{REMOTE}>', "cc": [f"Dr. Dan <dan@{REMOTE}>"], "subject": "Hi",
            "text": "t", "from": f'"O\'Brien, \\"Ace\\": Bcc" <{inbox["address"]}>'})
        assert sent.status_code == 200, sent.text
        data = sent.json()["data"]
        wait_until(lambda: sent_to(api, data["id"]) == {f"carol@{REMOTE}", f"dan@{REMOTE}"})

    delivered = [r for r in smtp_sink.received if data["smtp_message_id"].encode() in r.data]
    assert sorted(rcpt for r in delivered for rcpt in r.rcpt_tos) == [f"carol@{REMOTE}", f"dan@{REMOTE}"]
    mime = email.message_from_bytes(delivered[0].data, policy=policy.default)
    assert [a.addr_spec for a in mime["To"].addresses] == [f"carol@{REMOTE}"]
    assert [a.addr_spec for a in mime["Cc"].addresses] == [f"dan@{REMOTE}"]
    [sender] = mime["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ('O\'Brien, "Ace": Bcc', inbox["address"])
    assert "Bcc" not in mime
    assert not [r for r in smtp_sink.received if any(EVIL in rcpt for rcpt in r.rcpt_tos)]


def _address_cases() -> list[tuple[str, object]]:
    hostile = [
        *(f'"Bob{c}" <{{addr}}>' for c in ["\r\n", "\t", "\x00", "\x7f", "\x85", "\u2028", "\u2029"]),
        "{addr}, other@commune.localhost",
        "{addr}; other@commune.localhost",
        "Bob <{addr}> <other@commune.localhost>",
        "other@commune.localhost <{addr}>",
        '"other@commune.localhost" <{addr}>',
        "Bob (other@commune.localhost) <{addr}>",
    ]
    cases: list[tuple[str, object]] = []
    for value in hostile:
        cases += [("to", value), ("cc", [value]), ("bcc", ["{addr}", value]), ("reply_to", value),
                  ("reply_to", [value]), ("from", value)]
    return cases


@pytest.mark.parametrize(("field", "value"), _address_cases(), ids=repr)
def test_address_fields_refuse_controls_and_ambiguity(running, api, field: str, value: object) -> None:
    inbox = make_inbox(api)
    fill = (lambda v: v.format(addr=inbox["address"]))
    value = [fill(v) for v in value] if isinstance(value, list) else fill(value)
    body = {"to": inbox["address"], "subject": "s", "text": "t", "inboxId": inbox["id"], field: value}
    response = api.post("/v1/messages/send", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"Invalid request: {field}:")
    assert api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"] == []


@pytest.mark.parametrize("char", LINE_BREAKERS + CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("where", ["subject", "headers", "from"])
def test_header_text_with_a_control_character_is_a_400(running, api, where: str, char: str) -> None:
    inbox = make_inbox(api)
    body: dict[str, object] = {"to": inbox["address"], "subject": "Status", "text": "t", "inboxId": inbox["id"]}
    if where == "subject":
        body["subject"] = f"Status{char}update"
    elif where == "headers":
        body["headers"] = {"X-Ticket": f"4711{char}4712"}
    else:
        body["from"] = f'"Support{char}Desk" <{inbox["address"]}>'
    response = api.post("/v1/messages/send", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(f"Invalid request: {where}:") and f"U+{ord(char):04X}" in error


@pytest.mark.parametrize("field", ["text", "html"])
def test_a_body_that_is_not_unicode_text_is_a_400(running, api, field: str) -> None:
    inbox = make_inbox(api)
    body = {"to": inbox["address"], "subject": "s", "inboxId": inbox["id"], field: "half a pair: \ud83d"}
    response = api.post("/v1/messages/send", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"Invalid request: {field}:")


# Every kind of character, controls, separators, surrogates, unassigned and private-use included.
ANY_TEXT = st.text(st.characters(codec=None), max_size=60)


@settings(max_examples=100, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(subject=ANY_TEXT, name=ANY_TEXT, header=ANY_TEXT, filename=ANY_TEXT, text=ANY_TEXT)
def test_generated_header_text_is_sent_or_refused_never_a_500(running, api, subject: str, name: str, header: str,
                                                             filename: str, text: str) -> None:
    inbox = make_inbox(api)
    upload = api.post("/v1/attachments/upload", content=json.dumps({"content": "aGk=", "filename": filename}),
                      headers={"Content-Type": "application/json"})
    assert upload.status_code in (201, 400), upload.text
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    mailbox = f'"{quoted}" <{inbox["address"]}>'
    body = {"to": mailbox, "subject": subject, "text": text or "t", "from": mailbox, "headers": {"X-Note": header},
            "attachments": [upload.json()["data"]["attachment_id"]] if upload.status_code == 201 else []}
    response = api.post("/v1/messages/send", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"].startswith("Invalid request: ")
        return
    mime = raw_of(running, response.json()["data"]["id"])
    assert mime["Subject"] == subject.strip()
    assert mime["X-Note"] == header.strip()
    assert [a.addr_spec for a in mime["From"].addresses] == [inbox["address"]]
    assert [a.addr_spec for a in mime["To"].addresses] == [inbox["address"]]
    assert len(list(mime.iter_attachments())) == len(body["attachments"])
