"""Sending through the API: local delivery, threading headers, the outbound queue, sender rules, idempotency."""

from __future__ import annotations

import json

import pytest

from tests.mailtools import make_inbox, raw_of


@pytest.fixture
def partner(dns_server) -> str:
    """A remote domain with an MX record, so sends to it are accepted and queued."""
    dns_server.publish("partner.test", "MX", "10 mx.partner.test.")
    return "partner.test"


def rows(running, sql: str, *params: object) -> list[dict]:
    services = running.server.services
    return running.run(lambda: [dict(r) for r in services.database.query(sql, params)])


def thread_messages(api, thread_id: str) -> list[dict]:
    response = api.get(f"/v1/threads/{thread_id}/messages")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_two_inboxes_hold_a_threaded_conversation(running, api) -> None:
    alice = make_inbox(api, name="Alice Example")
    bob = make_inbox(api)
    first = api.post("/v1/messages/send", json={
        "to": bob["address"], "subject": "Lunch?", "text": "Tuesday at noon?", "html": "<p>Tuesday at noon?</p>",
        "inboxId": alice["id"],
    })
    assert first.status_code == 200, first.text
    sent = first.json()
    assert "validation" not in sent
    assert sent["data"]["status"] == "delivered"
    assert sent["data"]["smtp_message_id"].endswith("@commune.localhost>")

    [bob_thread] = api.get("/v1/threads", params={"inbox_id": bob["id"]}).json()["data"]
    [received] = thread_messages(api, bob_thread["thread_id"])
    assert received["direction"] == "inbound"
    assert received["metadata"]["message_id"] == sent["data"]["smtp_message_id"]
    assert received["content"] == "Tuesday at noon?"

    reply = api.post("/v1/messages/send", json={
        "to": [alice["address"]], "subject": "Re: Lunch?", "text": "Works for me.",
        "inbox_id": bob["id"], "thread_id": bob_thread["thread_id"],
    }).json()["data"]
    assert reply["thread_id"] == bob_thread["thread_id"]
    again = api.post("/v1/messages/send", json={
        "to": bob["address"], "subject": "Re: Lunch?", "text": "See you.", "thread_id": sent["data"]["thread_id"],
    }).json()["data"]
    assert again["thread_id"] == sent["data"]["thread_id"]

    alice_side = thread_messages(api, sent["data"]["thread_id"])
    bob_side = thread_messages(api, bob_thread["thread_id"])
    assert [m["direction"] for m in alice_side] == ["outbound", "inbound", "outbound"]
    assert [m["direction"] for m in bob_side] == ["inbound", "outbound", "inbound"]
    assert [m["content"] for m in alice_side] == [m["content"] for m in bob_side]
    [summary] = api.get("/v1/threads", params={"inbox_id": alice["id"]}).json()["data"]
    assert summary["message_count"] == 3 and summary["last_direction"] == "outbound"

    mime = raw_of(running, again["message_id"])
    assert mime["In-Reply-To"] == reply["smtp_message_id"]
    assert mime["References"].split() == [sent["data"]["smtp_message_id"], reply["smtp_message_id"]]
    assert mime["From"].addresses[0].display_name == "Alice Example"
    assert mime["Message-ID"] == again["smtp_message_id"] and mime["Date"]
    first_mime = raw_of(running, sent["data"]["id"])
    assert first_mime.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in first_mime.iter_parts()] == ["text/plain", "text/html"]
    events = rows(running, "SELECT event_type, recipient FROM delivery_events WHERE message_id = ?", sent["data"]["id"])
    assert events == [{"event_type": "delivered", "recipient": bob["address"]}]


def test_remote_recipients_are_queued_and_bcc_stays_out_of_headers(running, api, partner) -> None:
    alice, hidden = make_inbox(api), make_inbox(api)
    result = api.post("/v1/messages/send", json={
        "to": f"Carol <carol@{partner}>", "cc": [f"dan@{partner}"], "bcc": [hidden["address"]],
        "reply_to": "replies@partner.test", "subject": "Quarterly", "text": "Numbers attached soon.",
        "inboxId": alice["id"], "headers": {"X-Campaign": "q3"},
    })
    assert result.status_code == 200, result.text
    data = result.json()["data"]
    assert data["status"] == "queued"
    # The outbound worker may already be working on these rows, so only who was queued is certain.
    queued = rows(running, "SELECT recipient FROM outbound_queue WHERE message_id = ? ORDER BY recipient", data["id"])
    assert queued == [{"recipient": f"carol@{partner}"}, {"recipient": f"dan@{partner}"}]
    first_events = rows(running, "SELECT DISTINCT recipient FROM delivery_events WHERE message_id = ?"
                        " AND event_type = 'queued' ORDER BY recipient", data["id"])
    assert first_events == queued
    mime = raw_of(running, data["id"])
    assert "Bcc" not in mime and hidden["address"] not in mime.as_string()
    assert mime["X-Campaign"] == "q3" and mime["Reply-To"] == "replies@partner.test"
    assert mime["To"] == f"carol@{partner}" and mime["Cc"] == f"dan@{partner}"

    [copy] = api.get("/v1/messages", params={"inbox_id": hidden["id"]}).json()["data"]
    assert {p["role"] for p in copy["participants"]} == {"sender", "to", "cc"}
    [mine] = api.get("/v1/messages", params={"inbox_id": alice["id"]}).json()["data"]
    assert {"role": "bcc", "identity": hidden["address"]} in mine["participants"]
    assert mine["metadata"]["delivery_status"] != "delivered"


def test_sender_resolution_and_other_organisations(running, api) -> None:
    mine = make_inbox(api, local_part="agent")
    body = {"to": mine["address"], "subject": "s", "text": "t"}
    assert api.post("/v1/messages/send", json={**body, "from": f"Me <{mine['address']}>"}).status_code == 200
    by_domain = api.post("/v1/messages/send", json={**body, "domainId": mine["domain_id"]})
    assert by_domain.status_code == 200, by_domain.text
    none = api.post("/v1/messages/send", json=body)
    assert none.status_code == 400 and "inboxId" in none.json()["error"]
    with running.client(running.new_key()) as stranger:
        theirs = make_inbox(stranger)
        sent = stranger.post("/v1/messages/send", json={**body, "inboxId": theirs["id"]}).json()["data"]
        assert stranger.post("/v1/messages/send", json={**body, "from": mine["address"]}).status_code == 400
        assert stranger.post("/v1/messages/send", json={**body, "inboxId": mine["id"]}).status_code == 404
        lone = stranger.post("/v1/messages/send", json={**body, "domainId": mine["domain_id"]})
        assert lone.status_code == 400 and "domainId" in lone.json()["error"]
    assert api.post("/v1/messages/send", json={**body, "thread_id": sent["thread_id"]}).status_code == 404
    other = make_inbox(api)
    own_thread = api.post("/v1/messages/send", json={**body, "inboxId": other["id"]}).json()["data"]["thread_id"]
    crossed = api.post("/v1/messages/send", json={**body, "inboxId": mine["id"], "thread_id": own_thread})
    assert crossed.status_code == 400 and "thread_id" in crossed.json()["error"]


@pytest.mark.parametrize("patch, field", [
    ({"to": None}, "to"),
    ({"to": 5}, "to"),
    ({"to": []}, "to"),
    ({"subject": "x" * 501}, "subject"),
    ({"subject": None}, "subject"),
    ({"text": None}, "text"),
    ({"cc": [1]}, "cc"),
    ({"headers": {"X-A": "a\r\nBcc: evil@x.test"}}, "headers"),
    ({"headers": {"From": "ceo@x.test"}}, "headers"),
    ({"headers": {"Bad Name": "x"}}, "headers"),
    ({"attachments": "abc"}, "attachments"),
    ({"reply_to": "not an address"}, "reply_to"),
    ({"from": "nobody"}, "from"),
    ({"thread_id": 7}, "thread_id"),
    ({"bcc": [f"r{n}@commune.localhost" for n in range(101)]}, "bcc"),
])
def test_bad_send_input_is_a_400_naming_the_field(running, api, patch, field) -> None:
    inbox = make_inbox(api)
    body = {"to": inbox["address"], "subject": "s", "text": "t", "inboxId": inbox["id"], **patch}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post("/v1/messages/send", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


def test_idempotency_key_replays_the_first_result(running, api) -> None:
    inbox = make_inbox(api)
    body = {"to": inbox["address"], "subject": "once", "text": "only once", "inboxId": inbox["id"]}
    headers = {"Idempotency-Key": "order-4521-confirmation"}
    first = api.post("/v1/messages/send", json=body, headers=headers)
    second = api.post("/v1/messages/send", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    messages = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert len(messages) == 2  # one sent copy and one local delivery, not four
    with running.client(running.new_key()) as stranger:
        theirs = make_inbox(stranger)
        other = stranger.post("/v1/messages/send", headers=headers,
                              json={**body, "to": theirs["address"], "inboxId": theirs["id"]})
        assert other.json()["data"]["id"] != first.json()["data"]["id"]
    failed = api.post("/v1/messages/send", json={**body, "to": "nobody@nowhere.invalid"},
                      headers={"Idempotency-Key": "retry-me"})
    assert failed.status_code == 400
    retried = api.post("/v1/messages/send", json=body, headers={"Idempotency-Key": "retry-me"})
    assert retried.status_code == 200


def test_an_idempotency_key_reused_for_another_message_is_a_409(running, api) -> None:
    inbox = make_inbox(api)
    body = {"to": inbox["address"], "subject": "Invoice 7", "text": "Attached.", "inboxId": inbox["id"]}
    headers = {"Idempotency-Key": "invoice-7", "Content-Type": "application/json"}
    first = api.post("/v1/messages/send", json=body, headers=headers)
    assert first.status_code == 200, first.text
    changed = api.post("/v1/messages/send", json={**body, "subject": "Invoice 8"}, headers=headers)
    assert changed.status_code == 409, changed.text
    assert "invoice-7" in changed.json()["error"]
    # The same request written with other key order and spacing is still the same request.
    rewritten = json.dumps(dict(reversed(body.items())), indent=2)
    again = api.post("/v1/messages/send", content=rewritten, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    stored = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    subjects = [m["metadata"]["subject"] for m in stored]
    assert subjects == ["Invoice 7", "Invoice 7"]  # the sent copy and its local delivery, nothing of Invoice 8


def test_display_names_cannot_break_headers(running, api) -> None:
    forged = api.post("/v1/inboxes", json={"local_part": "mallory", "name": "Mallory\r\nBcc: victim@partner.test"})
    inbox = forged.json()["data"] if forged.status_code == 201 else make_inbox(api, name="Mallory")
    sent = api.post("/v1/messages/send", json={
        "to": inbox["address"], "subject": "Hello", "text": "t", "inboxId": inbox["id"]})
    assert sent.status_code == 200, sent.text
    mime = raw_of(running, sent.json()["data"]["id"])
    assert "Bcc" not in mime and mime["From"].addresses[0].addr_spec == inbox["address"]
    spoofed = api.post("/v1/messages/send", json={
        "to": inbox["address"], "subject": "Hello", "text": "t",
        "from": f"\"Mallory\r\nBcc: victim@partner.test\" <{inbox['address']}>"})
    assert spoofed.status_code == 400 and "from" in spoofed.json()["error"]


def test_an_idempotency_key_older_than_a_day_sends_again(running, api) -> None:
    inbox = make_inbox(api)
    body = {"to": inbox["address"], "subject": "daily", "text": "report", "inboxId": inbox["id"]}
    headers = {"Idempotency-Key": "daily-report"}
    first = api.post("/v1/messages/send", json=body, headers=headers).json()["data"]
    services = running.server.services

    def age_keys() -> None:
        with services.database.transaction() as conn:
            conn.execute("UPDATE idempotency_keys SET created_at = created_at - 25 * 3600 WHERE key = 'daily-report'")

    running.run(age_keys)
    second = api.post("/v1/messages/send", json=body, headers=headers).json()["data"]
    assert second["id"] != first["id"]
    assert api.post("/v1/messages/send", json=body, headers=headers).json()["data"]["id"] == second["id"]
