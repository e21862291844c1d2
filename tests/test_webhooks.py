"""Signed webhooks for incoming mail: payload, signature, retries, restart, refusal, delivery log API."""

from __future__ import annotations

import json
import signal
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from commune.types import Message
from commune.webhooks import verify_signature

from backend.mail.model import IncomingMessage
from tests.conftest import start_server
from tests.mailtools import ingest, make_inbox
from tests.official_clients import run_cli
from tests.server_process import ServerProcess
from tests.smtp_sink import SmtpSink
from tests.waiting import wait_until
from tests.webhook_receiver import HANG, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def fast(tmp_path_factory, dns_server, engine):
    """A server whose webhook retries come quickly: short backoff and timeout, three attempts."""
    server = start_server(tmp_path_factory.mktemp("hooks"), dns_server, webhook_backoff=0.2,
                          webhook_timeout=1.0, webhook_max_attempts=3, engine=engine)
    yield server
    server.stop()


def delivery(client: httpx.Client, delivery_id: str) -> dict:
    response = client.get(f"/v1/webhooks/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def hooked_inbox(client: httpx.Client, url: str, events: list[str] | None = None) -> dict:
    webhook: dict = {"endpoint": url}
    if events is not None:
        webhook["events"] = events
    return make_inbox(client, webhook=webhook)


def verified(hit, secret: str) -> dict:
    assert verify_signature(hit.body, hit.headers["x-commune-signature"], secret,
                            timestamp=hit.headers["x-commune-timestamp"])
    return json.loads(hit.body)


def test_mail_arriving_over_smtp_is_posted_signed_with_the_full_message(running, api, receiver) -> None:
    inbox = hooked_inbox(api, receiver.url, ["inbound"])
    secret = inbox["webhook"]["secret"]
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Alice <alice@example.net>", inbox["address"], "Order #42"
    mail["Message-ID"] = "<o42@example.net>"
    mail.set_content("Where is my parcel?\n")
    mail.add_attachment(b"%PDF-1.4 label", maintype="application", subtype="pdf", filename="label.pdf")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail, from_addr="alice@example.net", to_addrs=[inbox["address"]])
    message = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"][0]
    hit = receiver.wait_for(1)[0]
    payload = verified(hit, secret)
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["x-commune-attempt"] == "1"
    assert payload["sender"] == "alice@example.net"
    assert payload["subject"] == "Order #42"
    assert payload["text"].strip() == "Where is my parcel?"
    assert payload["thread_id"] == message["thread_id"]
    assert payload["inboxId"] == inbox["id"] and payload["inboxAddress"] == inbox["address"]
    assert payload["event"] == "inbound" and payload["type"] == "email.received"
    parsed = Message.model_validate(payload["message"])
    assert parsed.message_id == message["message_id"] and parsed.direction == "inbound"
    assert payload["attachments"] == [{"attachment_id": message["attachments"][0], "filename": "label.pdf",
                                       "mime_type": "application/pdf", "size": 14}]
    with pytest.raises(Exception):
        verify_signature(hit.body, hit.headers["x-commune-signature"], "whsec_wrong",
                         timestamp=hit.headers["x-commune-timestamp"])

    delivery_id = hit.headers["x-commune-delivery-id"]
    shown = wait_until(lambda: delivery(api, delivery_id), lambda d: d["status"] == "success")
    assert shown["status"] == "success" and shown["httpStatus"] == 200 and shown["attemptCount"] == 1
    assert shown["payload"] == payload
    listed = api.get("/v1/webhooks/deliveries", params={"inbox_id": inbox["id"]}).json()
    assert [d["id"] for d in listed["data"]] == [delivery_id]


def test_events_list_decides_which_inboxes_get_a_webhook(running, api, receiver) -> None:
    wanted = {
        "default": hooked_inbox(api, receiver.url),
        "seed name": hooked_inbox(api, receiver.url, ["email.received"]),
        "bounces only": hooked_inbox(api, receiver.url, ["bounce"]),
    }
    for inbox in wanted.values():
        ingest(running, inbox["id"], subject="hello", text="hi")
    services = running.server.services
    default = wanted["default"]
    sent = IncomingMessage(sender=default["address"], to=["bob@example.net"], subject="sent", text="x")
    running.run(lambda: services.mail.ingest(services.domains.get_inbox_any(default["id"]), sent, "outbound"))
    received = receiver.wait_for(2)
    inboxes = sorted(json.loads(hit.body)["inboxId"] for hit in received)
    assert inboxes == sorted([default["id"], wanted["seed name"]["id"]])
    quiet = api.get("/v1/webhooks/deliveries", params={"inbox_id": wanted["bounces only"]["id"]}).json()
    assert quiet["data"] == []
    one = api.get("/v1/webhooks/deliveries", params={"inbox_id": default["id"]}).json()
    assert len(one["data"]) == 1, "outbound mail does not fire the inbound webhook"


def test_failure_then_timeout_then_recovery_retries_with_growing_delays(fast, receiver) -> None:
    receiver.plan = [500, HANG, 200]
    with fast.client(fast.new_key()) as client:
        inbox = hooked_inbox(client, receiver.url)
        ingest(fast, inbox["id"], subject="retry me", text="please")
        hits = receiver.wait_for(3)
        delivery_id = hits[0].headers["x-commune-delivery-id"]
        shown = wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] != "pending")
    assert shown["status"] == "success" and shown["attemptCount"] == 3
    first, second, third = shown["attempts"]
    assert first["http_status"] == 500 and "HTTP 500" in first["error"]
    assert second["http_status"] is None and "timed out" in second["error"]
    assert third["http_status"] == 200 and third["error"] is None
    assert 0 < first["retry_in"] < second["retry_in"]
    assert [h.headers["x-commune-attempt"] for h in hits] == ["1", "2", "3"]
    assert len({h.headers["x-commune-delivery-id"] for h in hits}) == 1
    assert len({h.headers["x-commune-signature"] for h in hits}) == 3  # fresh timestamp every attempt
    for hit in hits:
        verified(hit, inbox["webhook"]["secret"])


def test_gives_up_after_the_attempt_limit_and_a_manual_retry_delivers(fast, receiver, tmp_path) -> None:
    receiver.default = 503
    key = fast.new_key()
    with fast.client(key) as client:
        inbox = hooked_inbox(client, receiver.url)
        ingest(fast, inbox["id"], subject="doomed", text="x")
        delivery_id = receiver.wait_for(1)[0].headers["x-commune-delivery-id"]
        failed = wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] == "failed")
        assert failed["status"] == "failed" and failed["attemptCount"] == 3
        assert len(receiver.requests) == 3

        code, health = run_cli(fast.url, key, tmp_path, "webhooks", "health")
        assert code == 0 and health["success_rate"] == 0.0 and health["failed"] == 1

        receiver.default = 200
        code, retried = run_cli(fast.url, key, tmp_path, "webhooks", "retry", delivery_id)
        assert code == 0 and retried["data"]["status"] == "pending"
        done = wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] == "success")
        assert done["status"] == "success" and done["attemptCount"] == 4
        assert receiver.requests[-1].headers["x-commune-attempt"] == "4"

        code, listed = run_cli(fast.url, key, tmp_path, "webhooks", "list", "--status", "success")
        assert code == 0 and [row["id"] for row in listed["data"]] == [delivery_id]
        row = listed["data"][0]
        assert {"id", "status", "endpoint", "httpStatus", "attemptCount", "createdAt"} <= set(row)
        code, one = run_cli(fast.url, key, tmp_path, "webhooks", "get", delivery_id)
        assert code == 0 and one["data"]["id"] == delivery_id
        code, health = run_cli(fast.url, key, tmp_path, "webhooks", "health")
        assert health["success_rate"] == 1.0 and health["successRate"] == 1.0
        code, report = run_cli(fast.url, key, tmp_path, "doctor")
        checks = {c["name"]: c for c in report["checks"]}
        assert checks["webhooks"]["status"] == "pass"


def test_a_corrected_endpoint_receives_the_retried_delivery(fast, receiver) -> None:
    broken = WebhookReceiver(default=404)
    try:
        with fast.client(fast.new_key()) as client:
            inbox = hooked_inbox(client, broken.url)
            ingest(fast, inbox["id"], subject="lost?", text="x")
            delivery_id = broken.wait_for(1)[0].headers["x-commune-delivery-id"]
            wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] == "failed")
            fixed = client.put(f"/v1/domains/{inbox['domain_id']}/inboxes/{inbox['id']}",
                               json={"webhook": {"endpoint": receiver.url}}).json()["data"]
            assert fixed["webhook"]["secret"] == inbox["webhook"]["secret"]
            client.post(f"/v1/webhooks/deliveries/{delivery_id}/retry")
            hit = receiver.wait_for(1)[0]
            shown = wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] == "success")
    finally:
        broken.close()
    assert verified(hit, inbox["webhook"]["secret"])["subject"] == "lost?"
    assert shown["status"] == "success" and shown["endpoint"] == receiver.url


def test_redirects_are_not_followed_and_large_answers_are_cut_off(fast, receiver) -> None:
    receiver.plan = [(302, b"", {"location": "http://127.0.0.1:1/elsewhere"}), (200, b"x" * 2_000_000, {})]
    with fast.client(fast.new_key()) as client:
        inbox = hooked_inbox(client, receiver.url)
        ingest(fast, inbox["id"], subject="redirect", text="x")
        delivery_id = receiver.wait_for(1)[0].headers["x-commune-delivery-id"]
        shown = wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] != "pending")
    assert shown["status"] == "success" and shown["attemptCount"] == 2
    assert shown["attempts"][0]["http_status"] == 302
    assert "redirects are not followed" in shown["attempts"][0]["error"]
    assert all(h.path == "/hook" for h in receiver.requests)


def test_a_stalled_receiver_holds_a_few_slots_only(tmp_path, dns_server, engine) -> None:
    server = start_server(tmp_path, dns_server, webhook_timeout=30, engine=engine)
    stalled, healthy = WebhookReceiver(default=HANG), WebhookReceiver()
    try:
        with server.client(server.new_key()) as client:
            slow_inbox = hooked_inbox(client, stalled.url)
            quick_inbox = hooked_inbox(client, healthy.url.replace("127.0.0.1", "localhost"))
            for n in range(8):
                ingest(server, slow_inbox["id"], subject=f"stuck {n}", text="x")
            stalled.wait_for(4)
            ingest(server, quick_inbox["id"], subject="gets through", text="x")
            assert json.loads(healthy.wait_for(1)[0].body)["subject"] == "gets through"
        assert stalled.most_active == 4  # per-host cap: the other deliveries wait their turn
    finally:
        stalled.close()
        healthy.close()
        server.stop()


def test_a_restart_in_the_middle_of_retries_loses_no_delivery(tmp_path, dns_server, receiver, engine) -> None:
    receiver.plan = [500, HANG]
    first = start_server(tmp_path, dns_server, webhook_backoff=0.2, webhook_timeout=20, engine=engine)
    key = first.new_key(org="restart")
    with first.client(key) as client:
        inbox = hooked_inbox(client, receiver.url)
    ingest(first, inbox["id"], subject="survive", text="a restart")
    receiver.wait_for(2)  # the second attempt is now hanging, in flight
    first.stop()

    second = start_server(tmp_path, dns_server, webhook_backoff=0.2, engine=engine)
    try:
        with second.client(key) as client:
            hits = receiver.wait_for(3)
            delivery_id = hits[0].headers["x-commune-delivery-id"]
            shown = wait_until(lambda: delivery(client, delivery_id), lambda d: d["status"] == "success")
    finally:
        second.stop()
    assert shown["status"] == "success"
    assert [h.headers["x-commune-attempt"] for h in hits] == ["1", "2", "2"]
    assert {h.headers["x-commune-delivery-id"] for h in hits} == {delivery_id}
    verified(hits[-1], inbox["webhook"]["secret"])


def test_delivery_log_filters_pages_and_stays_inside_the_org(running, api, receiver) -> None:
    inbox = hooked_inbox(api, receiver.url)
    for n in range(3):
        ingest(running, inbox["id"], subject=f"page {n}", text="x")
    receiver.wait_for(3)
    seen, cursor = [], None
    while True:
        body = api.get("/v1/webhooks/deliveries", params={"inbox_id": inbox["id"], "limit": 2,
                                                          **({"cursor": cursor} if cursor else {})}).json()
        seen.extend(d["id"] for d in body["data"])
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
    assert len(seen) == len(set(seen)) == 3
    assert api.get("/v1/webhooks/deliveries", params={"endpoint": "http://nowhere/"}).json()["data"] == []
    assert api.get("/v1/webhooks/deliveries", params={"status": "sent"}).status_code == 400
    assert api.get("/v1/webhooks/deliveries", params={"cursor": "garbage"}).status_code == 400
    assert api.get("/v1/webhooks/deliveries", params={"limit": "0"}).status_code == 400
    with running.client(running.new_key()) as stranger:
        assert stranger.get(f"/v1/webhooks/deliveries/{seen[0]}").status_code == 404
        assert stranger.post(f"/v1/webhooks/deliveries/{seen[0]}/retry").status_code == 404
        assert stranger.get("/v1/webhooks/deliveries", params={"inbox_id": inbox["id"]}).status_code == 404
        assert stranger.get("/v1/webhooks/deliveries").json()["data"] == []
        assert stranger.get("/v1/webhooks/health").json()["success_rate"] is None


def test_sigkill_with_deliveries_in_flight_loses_none(tmp_path, dns_server, engine) -> None:
    hanging = WebhookReceiver(default=HANG)
    proc = ServerProcess(tmp_path, "--dns-servers", dns_server.address,
                         env={"COMMUNE_WEBHOOK_BACKOFF": "0.1", "COMMUNE_WEBHOOK_ALLOW_PRIVATE": "true",
                              # Restarted under its name, the node takes back at once what it had leased.
                              "COMMUNE_NODE_ID": "webhook-node"}, engine=engine)
    try:
        proc.start()
        with proc.client() as client:
            inbox = hooked_inbox(client, hanging.url)
        accepted = []
        with smtplib.SMTP("127.0.0.1", proc.smtp_port, timeout=10) as smtp:
            for n in range(10):
                mail = EmailMessage()
                mail["From"], mail["To"], mail["Subject"] = "bob@example.net", inbox["address"], f"crash {n}"
                mail.set_content("x")
                smtp.send_message(mail)  # raises unless the server answered 250
                accepted.append(f"crash {n}")
        hanging.wait_for(4)  # attempts in flight, none answered
        proc.signal(signal.SIGKILL)
        proc.wait(10)

        hanging.default = 200
        before = len(hanging.requests)
        proc.start()
        with proc.client() as client:
            rows = wait_until(lambda: client.get("/v1/webhooks/deliveries").json()["data"],
                              lambda d: len(d) == 10 and all(r["status"] == "success" for r in d))
    finally:
        proc.stop()
        hanging.close()
    assert len(rows) == 10 and {r["status"] for r in rows} == {"success"}
    answered = [json.loads(h.body)["subject"] for h in hanging.requests[before:]]
    assert sorted(answered) == sorted(accepted)


def test_delivery_outcomes_reach_inboxes_that_subscribed(tmp_path, dns_server, receiver, engine) -> None:
    sink = SmtpSink().start()
    dns_server.publish("partner-hooks.test", "MX", "10 mx.partner-hooks.test.")
    server = start_server(tmp_path, dns_server, relay=f"127.0.0.1:{sink.port}", engine=engine)
    try:
        with server.client(server.new_key()) as client:
            sender = hooked_inbox(client, receiver.url, ["delivery", "bounce"])
            quiet, local = hooked_inbox(client, receiver.url), make_inbox(client)

            def send(source: dict, to: str, subject: str) -> None:
                response = client.post("/v1/messages/send", json={"inboxId": source["id"], "to": [to],
                                                                  "subject": subject, "text": "x"})
                assert response.status_code in (200, 201), response.text

            send(quiet, local["address"], "inbound-only inbox: no outcome webhook")
            send(sender, local["address"], "local")
            send(sender, "carol@partner-hooks.test", "relayed")
            payloads = [verified(h, sender["webhook"]["secret"]) for h in receiver.wait_for(2)]
            sink.answer("550 5.1.1 no such user")
            send(sender, "nobody@partner-hooks.test", "bounced")
            payloads.append(verified(receiver.wait_for(3)[2], sender["webhook"]["secret"]))
            quiet_rows = client.get("/v1/webhooks/deliveries", params={"inbox_id": quiet["id"]}).json()["data"]
    finally:
        server.stop()
        sink.stop()
    outcomes = sorted((p["type"], p["recipient"]) for p in payloads)
    assert outcomes == [("email.bounced", "nobody@partner-hooks.test"), ("email.delivered", local["address"]),
                        ("email.sent", "carol@partner-hooks.test")]
    assert all(p["inboxId"] == sender["id"] and p["message_id"].startswith("msg_") for p in payloads)
    assert {p["event"] for p in payloads} == {"delivery", "bounce"}
    assert quiet_rows == []
