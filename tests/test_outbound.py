"""Outbound delivery over real SMTP to a local sink standing in for the remote server."""

from __future__ import annotations

import base64
import email
import smtplib
from collections.abc import Iterator
from email import policy
from pathlib import Path

import dkim
import httpx
import pytest

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.smtp_sink import SmtpSink, free_port, wait_until

PARTNER = "partner-out.test"


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    server = start_server(tmp_path_factory.mktemp("relayed"), dns_server, relay=f"127.0.0.1:{smtp_sink.port}",
                          delivery_backoff=0.1, delivery_backoff_max=0.2, engine=engine)
    yield server
    server.stop()


@pytest.fixture
def out_api(relayed: Running) -> Iterator[httpx.Client]:
    with relayed.client(relayed.new_key()) as client:
        yield client


def send(api: httpx.Client, **body: object) -> dict:
    response = api.post("/v1/messages/send", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def events(api: httpx.Client, message_id: str) -> list[dict]:
    response = api.get("/v1/delivery/events", params={"message_id": message_id})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["data"]))


def wait_for_event(api: httpx.Client, message_id: str, event_type: str) -> list[dict]:
    return wait_until(lambda: (found := events(api, message_id))
                      and any(e["event_type"] == event_type for e in found) and found)


def received_by(smtp_sink: SmtpSink, recipient: str) -> email.message.EmailMessage:
    found = wait_until(lambda: [r for r in smtp_sink.received if recipient in r.rcpt_tos])
    return email.message_from_bytes(found[-1].data, policy=policy.default)


def test_sent_mail_arrives_signed_threaded_and_with_attachments(relayed: Running, out_api: httpx.Client,
                                                                smtp_sink: SmtpSink) -> None:
    domain = out_api.post("/v1/domains", json={"name": "brand-out.test"}).json()["data"]
    inbox = make_inbox(out_api, domain_id=domain["id"])
    upload = out_api.post("/v1/attachments/upload", json={
        "content": base64.b64encode(b"quarterly numbers").decode(), "filename": "q3.csv", "mime_type": "text/csv",
    }).json()["data"]
    first = send(out_api, to=f"carol@{PARTNER}", subject="Numbers", text="See attached", inboxId=inbox["id"],
                 attachments=[upload["attachment_id"]])
    wait_for_event(out_api, first["id"], "sent")
    reply = send(out_api, to=f"carol@{PARTNER}", subject="Re: Numbers", text="One more thing",
                 thread_id=first["thread_id"])
    wait_for_event(out_api, reply["id"], "sent")

    # The sink serves the whole session (this module runs once per engine): this inbox's mail only.
    delivered = [r for r in smtp_sink.received if f"carol@{PARTNER}" in r.rcpt_tos and inbox["address"].encode() in r.data]
    original = email.message_from_bytes(delivered[0].data, policy=policy.default)
    assert original["Subject"] == "Numbers"
    assert original["From"].addresses[0].addr_spec == inbox["address"]
    assert original["Message-ID"] == first["smtp_message_id"]
    [attachment] = list(original.iter_attachments())
    assert attachment.get_filename() == "q3.csv" and attachment.get_content() == "quarterly numbers"
    assert delivered[0].mail_from.startswith("bounces+obq_") and delivered[0].mail_from.endswith("@send.brand-out.test")
    answer = email.message_from_bytes(delivered[1].data, policy=policy.default)
    assert answer["In-Reply-To"] == first["smtp_message_id"]
    assert first["smtp_message_id"] in answer["References"]

    records = out_api.get(f"/v1/domains/{domain['id']}/records").json()["data"]
    dkim_record = next(r for r in records if r["record"] == "DKIM")
    published = {dkim_record["name"].rstrip(".") + ".": dkim_record["value"].encode()}
    assert dkim.verify(delivered[0].data, dnsfunc=lambda name, timeout=5: published.get(name.decode()))
    tampered = delivered[0].data.replace(b"See attached", b"See nothing!")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: published.get(name.decode()))

    # Events in the same millisecond have no defined order, so only the set is certain here.
    assert sorted(e["event_type"] for e in events(out_api, first["id"])) == ["queued", "sent"]
    stored = out_api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert {m["metadata"]["delivery_status"] for m in stored} == {"sent"}


def test_relay_connections_are_reused(out_api: httpx.Client, smtp_sink: SmtpSink) -> None:
    inbox = make_inbox(out_api)
    before = smtp_sink.handler.greetings
    for n in range(3):
        sent = send(out_api, to=f"reuse{n}@{PARTNER}", subject=f"Reuse {n}", text="x", inboxId=inbox["id"])
        wait_for_event(out_api, sent["id"], "sent")
    assert smtp_sink.handler.greetings - before <= 1


def test_a_relay_that_dropped_an_idle_connection_gets_the_next_message_at_once(tmp_path, dns_server, engine) -> None:
    """A pooled connection the relay closed is not reused: the next message goes over a new one, without
    a deferral (a connection used a moment ago is reused without a liveness check)."""
    first_sink = SmtpSink().start()
    port = first_sink.port
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    server = start_server(tmp_path, dns_server, relay=f"127.0.0.1:{port}", engine=engine)
    second_sink = SmtpSink()
    try:
        with server.client(server.new_key()) as api:
            inbox = make_inbox(api)
            sent = send(api, to=f"first@{PARTNER}", subject="First", text="x", inboxId=inbox["id"])
            wait_for_event(api, sent["id"], "sent")
            first_sink.stop()  # the relay restarts: the pooled session ends
            second_sink.controller.port = port
            second_sink.start()
            sent = send(api, to=f"second@{PARTNER}", subject="Second", text="x", inboxId=inbox["id"])
            history = wait_for_event(api, sent["id"], "sent")
    finally:
        server.stop()
        second_sink.stop()
    assert [e["event_type"] for e in history] == ["queued", "sent"]
    assert received_by(second_sink, f"second@{PARTNER}")["Subject"] == "Second"


def test_a_relay_that_ends_a_pooled_session_with_421_gets_the_message_over_a_new_one(
        out_api: httpx.Client, smtp_sink: SmtpSink) -> None:
    inbox = make_inbox(out_api)
    first = send(out_api, to=f"pooled@{PARTNER}", subject="Pooled", text="x", inboxId=inbox["id"])
    wait_for_event(out_api, first["id"], "sent")
    greetings = smtp_sink.handler.greetings
    smtp_sink.answer("421 4.3.2 Service shutting down, closing transmission channel")
    second = send(out_api, to=f"after421@{PARTNER}", subject="After 421", text="x", inboxId=inbox["id"])
    history = wait_for_event(out_api, second["id"], "sent")
    assert [e["event_type"] for e in history] == ["queued", "sent"], "sent at once, not deferred"
    assert smtp_sink.handler.greetings == greetings + 1, "over a second connection"
    assert received_by(smtp_sink, f"after421@{PARTNER}")["Subject"] == "After 421"


def test_temporary_failure_is_deferred_then_sent(out_api: httpx.Client, smtp_sink: SmtpSink) -> None:
    inbox = make_inbox(out_api)
    smtp_sink.answer("451 4.3.0 Greylisted, try again")
    sent = send(out_api, to=f"dave@{PARTNER}", subject="Later", text="Eventually", inboxId=inbox["id"])
    history = wait_for_event(out_api, sent["id"], "sent")
    assert sorted(e["event_type"] for e in history) == ["deferred", "queued", "sent"]
    assert [e["event_type"] for e in history][-1] == "sent"
    assert "451" in next(e["detail"] for e in history if e["event_type"] == "deferred")
    assert received_by(smtp_sink, f"dave@{PARTNER}")["Subject"] == "Later"


def test_permanent_failure_bounces_and_suppresses(out_api: httpx.Client, smtp_sink: SmtpSink) -> None:
    inbox = make_inbox(out_api)
    smtp_sink.answer("550 5.1.1 No such user here")
    sent = send(out_api, to=f"gone@{PARTNER}", subject="Hello?", text="Anyone?", inboxId=inbox["id"])
    history = wait_for_event(out_api, sent["id"], "bounced")
    assert "550 5.1.1" in next(e["detail"] for e in history if e["event_type"] == "bounced")
    [suppression] = out_api.get("/v1/delivery/suppressions", params={"email": f"gone@{PARTNER}"}).json()["data"]
    assert suppression["reason"] == "hard_bounce"
    assert suppression["suppressed_at"] == suppression["suppressedAt"]
    again = out_api.post("/v1/messages/send", json={"to": f"gone@{PARTNER}", "subject": "Again", "text": "x",
                                                    "inboxId": inbox["id"]})
    assert again.status_code == 400
    assert "suppressed" in again.json()["error"]


def test_policy_rejection_bounces_without_suppressing(out_api: httpx.Client, smtp_sink: SmtpSink) -> None:
    inbox = make_inbox(out_api)
    smtp_sink.answer("550 5.7.1 Message rejected as spam")
    sent = send(out_api, to=f"picky@{PARTNER}", subject="Offer", text="Buy", inboxId=inbox["id"])
    wait_for_event(out_api, sent["id"], "bounced")
    assert out_api.get("/v1/delivery/suppressions", params={"email": f"picky@{PARTNER}"}).json()["data"] == []


def test_bounce_report_to_the_return_path_is_recorded(relayed: Running, out_api: httpx.Client,
                                                      smtp_sink: SmtpSink) -> None:
    inbox = make_inbox(out_api)
    sent = send(out_api, to=f"later-gone@{PARTNER}", subject="Accepted first", text="x", inboxId=inbox["id"])
    wait_for_event(out_api, sent["id"], "sent")
    return_path = next(r.mail_from for r in smtp_sink.received
                       if f"later-gone@{PARTNER}" in r.rcpt_tos and sent["smtp_message_id"].encode() in r.data)
    report = (
        f"From: MAILER-DAEMON@mx.{PARTNER}\r\nTo: {return_path}\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n\r\n"
        "--R\r\nContent-Type: text/plain\r\n\r\nThe mailbox was closed.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.partner-out.test\r\n\r\n"
        f"Final-Recipient: rfc822; later-gone@{PARTNER}\r\nAction: failed\r\nStatus: 5.2.1\r\n"
        "Diagnostic-Code: smtp; 550 5.2.1 Mailbox disabled\r\n\r\n--R--\r\n"
    )
    with smtplib.SMTP("127.0.0.1", relayed.server.smtp_port, timeout=10) as client:
        assert client.sendmail("", [return_path], report.encode()) == {}
    history = wait_for_event(out_api, sent["id"], "bounced")
    assert "5.2.1" in next(e["detail"] for e in history if e["event_type"] == "bounced")
    suppressed = out_api.get("/v1/delivery/suppressions", params={"email": f"later-gone@{PARTNER}"}).json()
    assert [s["reason"] for s in suppressed["data"]] == ["hard_bounce"]
    assert out_api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"][0]["direction"] == "outbound"


def test_direct_delivery_follows_the_mx_records(tmp_path: Path, dns_server, smtp_sink: SmtpSink, engine) -> None:
    # The preferred exchanger has no address, so delivery must fall through to the next one.
    dns_server.publish("direct.test", "MX", "20 mx-main.direct.test.", "10 mx-gone.direct.test.")
    dns_server.publish("mx-main.direct.test", "A", "127.0.0.1")
    dns_server.publish("a-only.test", "A", "127.0.0.1")
    server = start_server(tmp_path, dns_server, smtp_direct_port=smtp_sink.port, engine=engine)
    try:
        with server.client(server.new_key()) as api:
            inbox = make_inbox(api)
            sent = send(api, to="erin@direct.test", subject="Straight to MX", text="hi", inboxId=inbox["id"])
            wait_for_event(api, sent["id"], "sent")
            # Without MX records the domain's own address is the exchanger (RFC 5321 §5.1).
            fallback = send(api, to="gus@a-only.test", subject="No MX", text="hi", inboxId=inbox["id"])
            wait_for_event(api, fallback["id"], "sent")
        assert received_by(smtp_sink, "erin@direct.test")["Subject"] == "Straight to MX"
        assert received_by(smtp_sink, "gus@a-only.test")["Subject"] == "No MX"
    finally:
        server.stop()


def test_restart_in_the_middle_of_a_queue_loses_nothing(tmp_path: Path, dns_server, smtp_sink: SmtpSink, engine) -> None:
    dns_server.publish("restart.test", "MX", "10 mx.restart.test.")
    closed = free_port()
    first = start_server(tmp_path, dns_server, relay=f"127.0.0.1:{closed}", delivery_backoff=0.1,
                         delivery_backoff_max=0.2, engine=engine)
    key = first.new_key()
    with first.client(key) as api:
        inbox = make_inbox(api)
        ids = [send(api, to=f"r{n}@restart.test", subject=f"Queued {n}", text="x", inboxId=inbox["id"])["id"]
               for n in range(6)]
        wait_for_event(api, ids[0], "deferred")
    first.stop()
    second = start_server(tmp_path, dns_server, relay=f"127.0.0.1:{smtp_sink.port}", delivery_backoff=0.1,
                          delivery_backoff_max=0.2, engine=engine)
    try:
        with second.client(key) as api:
            for message_id in ids:
                wait_for_event(api, message_id, "sent")
        for n in range(6):
            assert received_by(smtp_sink, f"r{n}@restart.test")["Subject"] == f"Queued {n}"
    finally:
        second.stop()


def test_gives_up_after_the_maximum_age(tmp_path: Path, dns_server, engine) -> None:
    dns_server.publish("never.test", "MX", "10 mx.never.test.")
    server = start_server(tmp_path, dns_server, relay=f"127.0.0.1:{free_port()}", delivery_backoff=0.1,
                          delivery_backoff_max=0.2, delivery_max_age=0.5, engine=engine)
    try:
        with server.client(server.new_key()) as api:
            inbox = make_inbox(api)
            sent = send(api, to="x@never.test", subject="Doomed", text="x", inboxId=inbox["id"])
            history = wait_for_event(api, sent["id"], "failed")
            assert "Gave up" in next(e["detail"] for e in history if e["event_type"] == "failed")
            assert api.get("/v1/delivery/suppressions", params={"email": "x@never.test"}).json()["data"] == []
    finally:
        server.stop()


def test_delivery_transitions_are_live_events(relayed: Running, out_api: httpx.Client) -> None:
    inbox = make_inbox(out_api)
    key = out_api.headers["Authorization"]
    with httpx.Client(base_url=relayed.url, headers={"Authorization": key}, timeout=10) as live, \
            live.stream("GET", "/v1/events", params={"types": "delivery.status"}) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith(": connected")
        sent = send(out_api, to=f"frank@{PARTNER}", subject="Live", text="x", inboxId=inbox["id"])
        data = next(line for line in lines if line.startswith("data: ") and sent["id"] in line)
    assert '"event_type":"sent"' in data and f"frank@{PARTNER}" in data
