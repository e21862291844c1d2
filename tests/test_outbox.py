"""The outbox through the real server, its outbound relay pointed at a local SMTP sink: drafts, scheduled
sends (`send_at`), approval holds, approve (with edits) / reject / cancel, events, webhooks, audit."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from commune.webhooks import verify_signature

from backend.auth import hash_key
from backend.store.migrations import MIGRATIONS, OUTBOX
from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.smtp_sink import SmtpSink, wait_until
from tests.test_auth import cli_target, commune_server
from tests.test_live import frames, next_events
from tests.webhook_receiver import WebhookReceiver

PARTNER = "outbox-partner.test"
_names = itertools.count()


def at(seconds: float) -> str:
    """An ISO 8601 time `seconds` from now, with its offset."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def address(tag: str) -> str:
    return f"{tag}-{next(_names)}@{PARTNER}"


@pytest.fixture(scope="module")
def relayed(tmp_path_factory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    server = start_server(tmp_path_factory.mktemp("outbox"), dns_server, relay=f"127.0.0.1:{smtp_sink.port}",
                          delivery_backoff=0.1, delivery_backoff_max=0.2, engine=engine)
    yield server
    server.stop()


class Org:
    """One organisation: an agent's read/write key and a person's admin key."""

    def __init__(self, running: Running) -> None:
        self.name = name = f"outbox-org-{next(_names)}"
        self.agent = running.client(running.new_key(["read", "write"], org=name))
        self.person = running.client(running.new_key(["admin"], org=name))
        self.inbox = make_inbox(self.agent)

    def close(self) -> None:
        self.agent.close()
        self.person.close()


@pytest.fixture
def org(relayed: Running) -> Iterator[Org]:
    made = Org(relayed)
    yield made
    made.close()


def arrivals(sink: SmtpSink, recipient: str) -> list:
    return [r for r in list(sink.received) if recipient in r.rcpt_tos]


def not_yet(sink: SmtpSink, recipient: str, send_at: float) -> None:
    """Nothing has reached the sink for `recipient`, if it is still before `send_at` once the sink was read
    (read first, then the clock, so a slow machine cannot make this fail)."""
    seen = arrivals(sink, recipient)
    if time.time() < send_at:
        assert seen == []


def send(client: httpx.Client, inbox: dict, to: str | list[str], expect: int = 202, **body: object) -> dict:
    body = {"inbox_id": inbox["id"], "to": to, "subject": "Hello", "text": "Body text", **body}
    response = client.post("/v1/messages/send", json=body)
    assert response.status_code == expect, response.text
    return response.json()["data"]


def message(client: httpx.Client, message_id: str) -> dict:
    response = client.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def paged_ids(client: httpx.Client, path: str, inbox_id: str) -> list[str]:
    """Every id of one inbox's list, two per page, following `next_cursor`."""
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "inbox_id": inbox_id, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=params).json()
        seen += [row["id"] for row in page["data"]]
        if not page["has_more"]:
            return seen
        cursor = page["next_cursor"]


def hold_all(org: Org, **settings: object) -> None:
    response = org.person.patch(f"/v1/inboxes/{org.inbox['id']}", json={"approval": "all", **settings})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["approval"] == "all"


# scheduled sends --------------------------------------------------------------------------------------
def test_scheduled_send_waits_then_leaves_once(org: Org, smtp_sink: SmtpSink) -> None:
    to = address("later")
    send_at = time.time() + 1.5
    sent = send(org.agent, org.inbox, to, send_at=datetime.fromtimestamp(send_at, UTC).isoformat())
    assert sent["status"] == "scheduled" and sent["send_at"]
    waiting = message(org.agent, sent["id"])
    assert waiting["metadata"]["delivery_status"] == "scheduled"
    assert "sent" not in waiting["labels"] and waiting["sent_at"] is None
    listed = org.agent.get("/v1/outbox", params={"status": "scheduled", "inbox_id": org.inbox["id"]}).json()
    assert [item["id"] for item in listed["data"]] == [sent["id"]]
    thread = org.agent.get(f"/v1/threads/{sent['thread_id']}/messages").json()["data"]
    assert [m["metadata"]["delivery_status"] for m in thread] == ["scheduled"]
    not_yet(smtp_sink, to, send_at)
    found = wait_until(lambda: arrivals(smtp_sink, to), timeout=20)
    assert time.time() >= send_at - 0.01
    time.sleep(0.3)
    assert len(arrivals(smtp_sink, to)) == len(found) == 1
    wait_until(lambda: message(org.agent, sent["id"])["metadata"]["delivery_status"] == "sent")
    left = message(org.agent, sent["id"])
    assert "sent" in left["labels"]
    assert datetime.fromisoformat(left["sent_at"]).timestamp() >= int(send_at)
    counts = org.agent.get("/v1/outbox/counts").json()["data"]
    assert counts == {"drafts": 0, "pending_approval": 0, "scheduled": 0}


def test_cancel_stops_a_scheduled_send_and_409_once_it_left(org: Org, smtp_sink: SmtpSink) -> None:
    stopped, control = address("cancelled"), address("control")
    first = send(org.agent, org.inbox, stopped, send_at=at(3))
    second = send(org.agent, org.inbox, control, send_at=at(3.5))
    response = org.agent.post(f"/v1/messages/{first['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "cancelled"
    assert message(org.agent, first["id"])["metadata"]["delivery_status"] == "cancelled"
    again = org.agent.post(f"/v1/messages/{first['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]
    wait_until(lambda: arrivals(smtp_sink, control), timeout=20)
    assert arrivals(smtp_sink, stopped) == []
    left = org.agent.post(f"/v1/messages/{second['id']}/cancel")
    assert left.status_code == 409 and "already left" in left.json()["error"]
    direct = send(org.agent, org.inbox, address("direct"), expect=200)
    assert org.agent.post(f"/v1/messages/{direct['id']}/cancel").status_code == 409
    assert org.agent.post("/v1/messages/msg_nope/cancel").status_code == 404


@pytest.mark.parametrize("value", ["tomorrow", "2030-13-01T00:00:00Z", "2030-01-01T10:00:00", "2030-01-01",
                                   "", 12345, "2026-01-01T00:00:00+25:00"])
def test_malformed_send_at_is_a_400(org: Org, value: object) -> None:
    if value == "":
        send(org.agent, org.inbox, address("blank"), expect=200, send_at=value)  # no time: sends now
        return
    response = org.agent.post("/v1/messages/send", json={
        "inbox_id": org.inbox["id"], "to": address("bad"), "subject": "x", "text": "y", "send_at": value})
    assert response.status_code == 400, response.text
    assert "send_at" in response.json()["error"]


def test_send_at_past_sends_now_and_over_30_days_is_refused(org: Org, smtp_sink: SmtpSink) -> None:
    to = address("past")
    sent = send(org.agent, org.inbox, to, expect=200, send_at=at(-3600))
    assert sent["status"] == "queued"
    wait_until(lambda: arrivals(smtp_sink, to))
    far = org.agent.post("/v1/messages/send", json={"inbox_id": org.inbox["id"], "to": to, "subject": "x",
                                                     "text": "y", "send_at": at(31 * 86400)})
    assert far.status_code == 400 and "30 days" in far.json()["error"]
    assert send(org.agent, org.inbox, address("ok"), send_at=at(29 * 86400))["status"] == "scheduled"


def test_idempotency_key_answers_the_scheduled_send_again(org: Org) -> None:
    body = {"inbox_id": org.inbox["id"], "to": address("idem"), "subject": "x", "text": "y", "send_at": at(600)}
    first = org.agent.post("/v1/messages/send", json=body, headers={"Idempotency-Key": "outbox-1"})
    again = org.agent.post("/v1/messages/send", json=body, headers={"Idempotency-Key": "outbox-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    listed = org.agent.get("/v1/outbox", params={"status": "scheduled"}).json()["data"]
    assert [i["id"] for i in listed] == [first.json()["data"]["id"]]


# approval holds ---------------------------------------------------------------------------------------
def test_held_message_leaves_only_after_approval_and_exactly_once(relayed: Running, org: Org,
                                                                  smtp_sink: SmtpSink) -> None:
    hold_all(org)
    to = address("held")
    sent = send(org.agent, org.inbox, to)
    assert sent["status"] == "pending_approval" and sent["expires_at"]
    page = org.person.get("/v1/approvals").json()
    assert [(i["id"], i["status"]) for i in page["data"]] == [(sent["id"], "pending_approval")]
    assert page["data"][0]["validation"] == {"rejected": [], "warnings": [], "suppressed": [],
                                             "duration_ms": page["data"][0]["validation"]["duration_ms"]}
    assert page["data"][0]["message"]["subject"] == "Hello"
    # The agent's own key cannot approve, nor can any key without approvals:write.
    own = org.agent.post(f"/v1/messages/{sent['id']}/approve")
    assert own.status_code == 403 and "approvals:write" in own.json()["error"]
    writer = relayed.client(relayed.new_key(["read", "write"], org=None))
    assert writer.post(f"/v1/messages/{sent['id']}/approve").status_code == 403
    writer.close()
    # Nothing reaches the sink while it waits: a later message to the same sink arrives first.
    control = address("control")
    send(org.person, org.inbox, control, expect=202)  # the person's send is held too (approval: all)
    direct = make_inbox(org.agent)
    send(org.agent, direct, control, expect=200)
    wait_until(lambda: arrivals(smtp_sink, control))
    assert arrivals(smtp_sink, to) == []
    approved = org.person.post(f"/v1/messages/{sent['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["data"]["status"] == "sent"
    wait_until(lambda: arrivals(smtp_sink, to))
    twice = org.person.post(f"/v1/messages/{sent['id']}/approve")
    assert twice.status_code == 409
    assert org.person.post(f"/v1/messages/{sent['id']}/reject", json={"reason": "late"}).status_code == 409
    assert org.agent.post(f"/v1/messages/{sent['id']}/cancel").status_code == 409
    time.sleep(0.3)
    assert len(arrivals(smtp_sink, to)) == 1
    audit = org.person.get("/v1/audit-logs").json()["data"]
    actions = [(e["action"], e.get("target_id")) for e in audit]
    assert ("message.pending_approval", sent["id"]) in actions and ("message.approved", sent["id"]) in actions


def test_self_approval_is_403_even_for_an_admin_key(org: Org) -> None:
    hold_all(org)
    sent = send(org.person, org.inbox, address("self"))
    response = org.person.post(f"/v1/messages/{sent['id']}/approve")
    assert response.status_code == 403 and "submitted" in response.json()["error"]


def test_approve_with_edits_keeps_a_diff_and_reindexes_participants(org: Org, smtp_sink: SmtpSink) -> None:
    hold_all(org)
    to, added = address("edit-to"), address("edit-cc")
    sent = send(org.agent, org.inbox, to, text="First line\nSecond line\n")
    response = org.person.post(f"/v1/messages/{sent['id']}/approve", json={
        "subject": "Hello, edited", "text": "First line\nSecond line, reworded\n", "cc": [added.upper()]})
    assert response.status_code == 200, response.text
    item = response.json()["data"]
    assert item["message"]["subject"] == "Hello, edited"
    assert {"role": "cc", "identity": added} in item["message"]["participants"]
    wait_until(lambda: arrivals(smtp_sink, to) and arrivals(smtp_sink, added))
    raw = arrivals(smtp_sink, added)[0].data
    assert b"Subject: Hello, edited" in raw and b"reworded" in raw
    entry = org.person.get("/v1/audit-logs", params={"action": "message.approved"}).json()["data"][0]
    changes = entry["detail"]["changes"]
    assert changes["subject"] == {"from": "Hello", "to": "Hello, edited"}
    assert changes["cc"] == {"added": [added], "removed": []}
    assert "+Second line, reworded" in changes["text"]["diff"]
    thread = org.agent.get(f"/v1/threads/{sent['thread_id']}").json()["data"]
    assert thread["participantCount"] == 3
    found = org.agent.get("/v1/search/threads", params={"q": "reworded"}).json()["data"]
    assert [t["thread_id"] for t in found] == [sent["thread_id"]]
    # The substring index follows the edit too, and forgets the message once it is deleted.
    found = org.agent.get("/v1/search/threads", params={"q": "eworde"}).json()["data"]
    assert [t["thread_id"] for t in found] == [sent["thread_id"]]
    assert org.person.delete(f"/v1/threads/{sent['thread_id']}").is_success
    assert org.agent.get("/v1/search/threads", params={"q": "eworde"}).json()["data"] == []
    assert org.agent.get("/v1/search/threads", params={"q": "reworded"}).json()["data"] == []


def test_edit_to_an_address_that_fails_validation_is_a_400_with_the_block(org: Org) -> None:
    hold_all(org)
    sent = send(org.agent, org.inbox, address("edit-bad"))
    response = org.person.post(f"/v1/messages/{sent['id']}/approve", json={"to": ["someone@no-mx.invalid"]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert "someone@no-mx.invalid" in body["error"]
    assert body["validation"]["rejected"][0]["email"] == "someone@no-mx.invalid"
    bad_syntax = org.person.post(f"/v1/messages/{sent['id']}/approve", json={"to": ["not an address"]})
    assert bad_syntax.status_code == 400
    # Still pending: a refused edit changes nothing.
    assert org.person.get("/v1/approvals").json()["data"][0]["status"] == "pending_approval"


def test_reject_with_a_reason_and_what_cannot_follow(org: Org, smtp_sink: SmtpSink) -> None:
    hold_all(org)
    to = address("rejected")
    sent = send(org.agent, org.inbox, to)
    assert org.person.post(f"/v1/messages/{sent['id']}/reject", json={}).status_code == 400
    assert org.person.post(f"/v1/messages/{sent['id']}/reject", json={"reason": "  "}).status_code == 400
    response = org.person.post(f"/v1/messages/{sent['id']}/reject", json={"reason": "Wrong customer"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "rejected"
    assert response.json()["data"]["reason"] == "Wrong customer"
    assert message(org.agent, sent["id"])["metadata"]["delivery_status"] == "rejected"
    assert org.person.post(f"/v1/messages/{sent['id']}/approve").status_code == 409
    assert org.agent.post(f"/v1/messages/{sent['id']}/cancel").status_code == 409
    assert org.person.get("/v1/approvals").json()["data"] == []
    assert arrivals(smtp_sink, to) == []


def test_approving_a_cancelled_or_expired_message_is_a_409(relayed: Running, org: Org) -> None:
    hold_all(org)
    cancelled = send(org.agent, org.inbox, address("gone"))
    assert org.agent.post(f"/v1/messages/{cancelled['id']}/cancel").status_code == 200
    response = org.person.post(f"/v1/messages/{cancelled['id']}/approve")
    assert response.status_code == 409 and "cancelled" in response.json()["error"]
    expiring = send(org.agent, org.inbox, address("expiring"))
    # Stand in for 72 hours passing: the row's expiry time moves to now, then the worker acts on it.
    services = relayed.server.services

    def expire_now() -> None:
        services.database.execute("UPDATE outbox SET due_at = 0 WHERE id = ?", (expiring["id"],))
        services.outbox.notify()

    relayed.run(expire_now)
    item = wait_until(lambda: (found := org.person.get("/v1/outbox", params={"status": "rejected"}).json()["data"])
                      and found[0])
    assert (item["id"], item["reason"]) == (expiring["id"], "expired")
    late = org.person.post(f"/v1/messages/{expiring['id']}/approve")
    assert late.status_code == 409 and "rejected" in late.json()["error"]


def test_external_approval_holds_only_mail_leaving_the_organisation(org: Org) -> None:
    response = org.person.patch(f"/v1/inboxes/{org.inbox['id']}", json={"approval": "external",
                                                                          "approval_timeout_hours": 2})
    assert response.status_code == 200 and response.json()["data"]["approval_timeout_hours"] == 2
    domain = org.person.post("/v1/domains", json={"name": f"own-{next(_names)}.test"}).json()["data"]
    own = org.person.post(f"/v1/domains/{domain['id']}/inboxes", json={"local_part": "desk"}).json()["data"]
    inside = send(org.agent, org.inbox, own["address"], expect=200)
    assert inside["status"] == "delivered"
    outside = send(org.agent, org.inbox, [own["address"], address("outside")])
    assert outside["status"] == "pending_approval"
    expires = datetime.fromisoformat(outside["expires_at"])
    assert timedelta(hours=1.9) < expires - datetime.now(UTC) <= timedelta(hours=2)
    for bad in ({"approval": "some"}, {"approval_timeout_hours": 0}, {"approval_timeout_hours": "x"}):
        assert org.person.patch(f"/v1/inboxes/{org.inbox['id']}", json=bad).status_code == 400


def test_hold_sends_key_waits_and_patching_a_foreign_key_is_404(relayed: Running, org: Org) -> None:
    created = org.person.post("/v1/agent/api-keys", json={"name": "agent", "scopes": ["read", "write"],
                                                           "hold_sends": True})
    assert created.status_code == 201 and created.json()["data"]["hold_sends"] is True
    with relayed.client(created.json()["data"]["key"]) as agent:
        assert send(agent, org.inbox, address("agent"))["status"] == "pending_approval"
    mine = org.person.get("/v1/agent/api-keys").json()["data"]
    agent_key = next(k for k in mine if k["name"] == "agent")
    off = org.person.patch(f"/v1/agent/api-keys/{agent_key['id']}", json={"hold_sends": False})
    assert off.status_code == 200 and off.json()["data"]["hold_sends"] is False
    with relayed.client(created.json()["data"]["key"]) as agent:
        assert send(agent, org.inbox, address("agent"), expect=200)["status"] == "queued"
    assert org.person.patch(f"/v1/agent/api-keys/{agent_key['id']}", json={"hold_sends": "maybe"}).status_code == 400
    other = Org(relayed)
    foreign = other.person.patch(f"/v1/agent/api-keys/{agent_key['id']}", json={"hold_sends": "maybe"})
    assert foreign.status_code == 404
    other.close()


def test_suppression_is_checked_at_submission_and_again_at_release(org: Org, smtp_sink: SmtpSink) -> None:
    hold_all(org)
    stays, suppressed_later, suppressed_now = address("stays"), address("later"), address("now")
    org.person.post("/v1/delivery/suppressions", json={"email": suppressed_now, "reason": "manual"})
    sent = send(org.agent, org.inbox, [stays, suppressed_later, suppressed_now])
    item = org.person.get("/v1/approvals").json()["data"][0]
    assert item["validation"]["suppressed"] == [suppressed_now]
    org.person.post("/v1/delivery/suppressions", json={"email": suppressed_later, "reason": "manual"})
    assert org.person.post(f"/v1/messages/{sent['id']}/approve").status_code == 200
    wait_until(lambda: arrivals(smtp_sink, stays))
    time.sleep(0.3)
    assert arrivals(smtp_sink, suppressed_later) == arrivals(smtp_sink, suppressed_now) == []


def test_approvals_page_by_keyset_and_filter_by_inbox(org: Org) -> None:
    hold_all(org)
    sent = [send(org.agent, org.inbox, address("page"))["id"] for _ in range(5)]
    other = make_inbox(org.agent)
    org.person.patch(f"/v1/inboxes/{other['id']}", json={"approval": "all"})
    send(org.agent, other, address("elsewhere"))
    assert paged_ids(org.person, "/v1/approvals", org.inbox["id"]) == sent
    assert len(org.person.get("/v1/approvals").json()["data"]) == 6
    assert org.person.get("/v1/approvals", params={"cursor": "junk"}).status_code == 400
    assert org.person.get("/v1/approvals", params={"inbox_id": "inb_other"}).status_code == 404
    assert org.person.get("/v1/outbox", params={"status": "nope"}).status_code == 400
    assert org.agent.get("/v1/outbox/counts", params={"inbox_id": org.inbox["id"]}).json()["data"] == {
        "drafts": 0, "pending_approval": 5, "scheduled": 0}


def test_held_message_is_in_the_senders_thread_and_replies_thread_on_it(relayed: Running, org: Org) -> None:
    hold_all(org)
    local = make_inbox(org.agent)
    sent = send(org.agent, org.inbox, local["address"])
    thread = org.agent.get(f"/v1/threads/{sent['thread_id']}/messages").json()["data"]
    assert [m["metadata"]["delivery_status"] for m in thread] == ["pending_approval"]
    assert org.agent.get("/v1/threads", params={"inbox_id": local["id"]}).json()["data"] == []
    assert org.person.post(f"/v1/messages/{sent['id']}/approve").status_code == 200
    received = wait_until(lambda: org.agent.get("/v1/messages", params={"inbox_id": local["id"]}).json()["data"])
    reply = send(org.agent, local, org.inbox["address"], expect=200, thread_id=received[0]["thread_id"],
                 subject="Re: Hello")
    assert reply["status"] == "delivered"
    thread = org.agent.get(f"/v1/threads/{sent['thread_id']}/messages").json()["data"]
    assert [m["direction"] for m in thread] == ["outbound", "inbound"]


# events and webhooks ------------------------------------------------------------------------------------
def test_every_transition_is_a_signed_webhook_and_an_event(relayed: Running, org: Org) -> None:
    receiver = WebhookReceiver()
    try:
        updated = org.person.patch(f"/v1/inboxes/{org.inbox['id']}", json={
            "webhook": {"endpoint": receiver.url, "events": ["outbox"]}})
        assert updated.status_code == 200, updated.text
        secret = updated.json()["data"]["webhook"]["secret"]
        scheduled = send(org.agent, org.inbox, address("hook"), send_at=at(600))
        org.agent.post(f"/v1/messages/{scheduled['id']}/cancel")
        hold_all(org)
        approved = send(org.agent, org.inbox, address("hook"))
        org.person.post(f"/v1/messages/{approved['id']}/approve")
        rejected = send(org.agent, org.inbox, address("hook"))
        org.person.post(f"/v1/messages/{rejected['id']}/reject", json={"reason": "no"})
        hits = receiver.wait_for(6)
        bodies = []
        for hit in hits:
            assert verify_signature(hit.body, hit.headers["x-commune-signature"], secret,
                                    timestamp=hit.headers["x-commune-timestamp"])
            bodies.append(json.loads(hit.body))
        seen = sorted((b["message_id"], b["type"]) for b in bodies)
        assert seen == sorted([
            (scheduled["id"], "message.scheduled"), (scheduled["id"], "message.cancelled"),
            (approved["id"], "message.pending_approval"), (approved["id"], "message.approved"),
            (rejected["id"], "message.pending_approval"), (rejected["id"], "message.rejected")])
        assert next(b for b in bodies if b["type"] == "message.rejected")["reason"] == "no"
    finally:
        receiver.close()
    kinds = {(e.type, e.data.get("message_id")) for e in list(relayed.server.services.events.backlog)}
    assert {("message.approved", approved["id"]), ("message.rejected", rejected["id"]),
            ("message.cancelled", scheduled["id"])} <= kinds


# drafts -------------------------------------------------------------------------------------------------
def upload(client: httpx.Client, name: str = "notes.txt") -> str:
    response = client.post("/v1/attachments/upload", json={"content": "aGVsbG8=", "filename": name})
    assert response.status_code == 201, response.text
    return response.json()["data"]["attachment_id"]


def test_draft_lifecycle_and_send_returns_what_a_send_returns(org: Org, smtp_sink: SmtpSink) -> None:
    empty = org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"]})
    assert empty.status_code == 201, empty.text
    draft = empty.json()["data"]
    assert (draft["to"], draft["subject"], draft["inbox_id"]) == ([], None, org.inbox["id"])
    nothing = org.agent.post(f"/v1/drafts/{draft['id']}/send")
    assert nothing.status_code == 400 and "Field required" in nothing.json()["error"]
    assert org.agent.get(f"/v1/drafts/{draft['id']}").status_code == 200  # a failed send keeps the draft
    to = address("draft")
    attachment = upload(org.agent)
    patched = org.agent.patch(f"/v1/drafts/{draft['id']}", json={
        "to": to, "subject": "From a draft", "text": "Draft body", "attachments": [attachment]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["to"] == [to] and patched.json()["data"]["subject"] == "From a draft"
    assert org.agent.get(f"/v1/drafts/{draft['id']}").json()["data"]["attachments"] == [attachment]
    assert org.agent.get("/v1/outbox/counts").json()["data"]["drafts"] == 1
    other = make_inbox(org.agent)
    moved = org.agent.patch(f"/v1/drafts/{draft['id']}", json={"from": other["address"]})
    assert moved.status_code == 200 and moved.json()["data"]["inbox_id"] == other["id"]
    back = org.agent.patch(f"/v1/drafts/{draft['id']}", json={"inbox_id": org.inbox["id"]})
    assert back.status_code == 200 and back.json()["data"]["from"] is None
    sent = org.agent.post(f"/v1/drafts/{draft['id']}/send")
    assert sent.status_code == 200, sent.text
    assert set(sent.json()["data"]) >= {"id", "message_id", "thread_id", "smtp_message_id", "status"}
    wait_until(lambda: arrivals(smtp_sink, to))
    assert b"notes.txt" in arrivals(smtp_sink, to)[0].data
    assert org.agent.get(f"/v1/drafts/{draft['id']}").status_code == 404
    assert org.agent.post(f"/v1/drafts/{draft['id']}/send").status_code == 404


def test_draft_with_send_at_is_scheduled_when_sent(org: Org) -> None:
    created = org.agent.post("/v1/drafts", json={"from": org.inbox["address"], "to": [address("later")],
                                                 "subject": "Later", "html": "<p>Later</p>", "send_at": at(600)})
    assert created.status_code == 201, created.text
    sent = org.agent.post(f"/v1/drafts/{created.json()['data']['id']}/send")
    assert sent.status_code == 202 and sent.json()["data"]["status"] == "scheduled"


def test_draft_whose_attachment_was_deleted_is_a_400_naming_it(relayed: Running, org: Org) -> None:
    attachment = upload(org.agent, "gone.pdf")
    draft = org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"], "to": address("att"),
                                               "subject": "x", "text": "y", "attachments": [attachment]})
    assert draft.status_code == 201, draft.text
    services = relayed.server.services
    relayed.run(lambda: services.database.execute("DELETE FROM attachments WHERE id = ?", (attachment,)))
    response = org.agent.post(f"/v1/drafts/{draft.json()['data']['id']}/send")
    assert response.status_code == 400 and attachment in response.json()["error"]
    unknown = org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"], "attachments": ["nope"]})
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]


def test_drafts_page_newest_first_and_filter_by_inbox(org: Org) -> None:
    other = make_inbox(org.agent)
    made = [org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"], "subject": f"d{i}"}).json()["data"]["id"]
            for i in range(5)]
    org.agent.post("/v1/drafts", json={"inbox_id": other["id"], "subject": "elsewhere"})
    assert paged_ids(org.agent, "/v1/drafts", org.inbox["id"]) == list(reversed(made))
    assert len(org.agent.get("/v1/drafts").json()["data"]) == 6
    assert org.agent.delete(f"/v1/drafts/{made[0]}").status_code == 200
    assert org.agent.delete(f"/v1/drafts/{made[0]}").status_code == 404


@pytest.mark.parametrize("body", [
    {"inbox_id": "inb_nope"}, {"from": "stranger@elsewhere.test"}, {"to": "not an address"},
    {"subject": "two\nlines"}, {"headers": {"From": "x@y.z"}}, {"send_at": "soon"}, {"thread_id": "thread_x"},
    {"in_reply_to": "msg_nope"}, {"to": 5}, {},
])
def test_bad_drafts_are_4xx(org: Org, body: dict) -> None:
    if "inbox_id" not in body and "from" not in body:
        body = {"inbox_id": org.inbox["id"], **body} if body else {}
    response = org.agent.post("/v1/drafts", json=body)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]


def test_drafts_need_their_scopes_and_sending_needs_messages_write(relayed: Running, org: Org) -> None:
    draft = org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"], "to": address("scope"),
                                               "subject": "x", "text": "y"}).json()["data"]
    stranger = relayed.client(relayed.new_key(["drafts:read", "drafts:write"], org=f"scoped-{next(_names)}"))
    assert stranger.get("/v1/drafts").json()["data"] == []  # another organisation's drafts are not seen
    assert stranger.get(f"/v1/drafts/{draft['id']}").status_code == 404
    assert stranger.post(f"/v1/drafts/{draft['id']}/send").status_code == 404
    stranger.close()
    drafts_only = relayed.client(relayed.new_key(["drafts:read", "drafts:write"], org=org.name))
    assert drafts_only.get(f"/v1/drafts/{draft['id']}").status_code == 200
    refused = drafts_only.post(f"/v1/drafts/{draft['id']}/send")
    assert refused.status_code == 403 and "messages:write" in refused.json()["error"]
    drafts_only.close()
    reader = relayed.client(relayed.new_key(["read"], org=org.name))
    assert reader.get("/v1/drafts").status_code == 200
    assert reader.post("/v1/drafts", json={"inbox_id": org.inbox["id"]}).status_code == 403
    assert reader.get("/v1/approvals").status_code == 200
    reader.close()


def test_erasing_an_address_removes_drafts_and_held_mail_naming_it(relayed: Running, org: Org) -> None:
    hold_all(org)
    erased, kept = address("erased"), address("kept")
    named = org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"], "cc": [erased.upper()],
                                               "subject": "names it"}).json()["data"]
    other = org.agent.post("/v1/drafts", json={"inbox_id": org.inbox["id"], "to": [kept],
                                               "text": erased}).json()["data"]
    held = send(org.agent, org.inbox, erased)
    eraser = relayed.client(relayed.new_key(["data:delete"], org=org.name))
    created = eraser.post("/v1/data/deletion-request", json={"scope": "email", "email": erased})
    assert created.status_code == 201, created.text
    assert created.json()["preview"]["outbox"] == 2
    done = eraser.post(f"/v1/data/deletion-request/{created.json()['id']}/confirm",
                       json={"confirmation_token": created.json()["confirmation_token"]})
    assert done.status_code == 200, done.text
    eraser.close()
    assert org.agent.get(f"/v1/drafts/{named['id']}").status_code == 404
    assert org.agent.get(f"/v1/drafts/{other['id']}").status_code == 200
    assert org.agent.get(f"/v1/messages/{held['id']}").status_code == 404
    assert org.person.get("/v1/approvals").json()["data"] == []
    left = relayed.run(lambda: relayed.server.services.database.query(
        "SELECT id FROM outbox WHERE payload LIKE ?", (f"%{erased}%",)))
    assert [row["id"] for row in left] == [other["id"]]  # only the draft whose body merely mentions it


def test_an_install_from_before_the_outbox_upgrades_in_place(tmp_path, dns_server) -> None:
    """A data directory from before the OUTBOX migration: its keys and inboxes gain the new settings."""
    before = MIGRATIONS.index(OUTBOX)
    conn = sqlite3.connect(tmp_path / "commune.db", isolation_level=None)
    for script in MIGRATIONS[:before]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {before}")
    stamp = "2024-01-01T00:00:00.000Z"
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org-old', 'old', ?)", (stamp,))
    conn.execute("INSERT INTO api_keys (id, org_id, name, key_hash, prefix, scopes, created_at) VALUES"
                 " ('key_old', 'org-old', 'old', ?, 'comm_o', '[\"admin\", \"read\", \"write\"]', ?)",
                 (hash_key("comm_old-secret"), stamp))
    conn.close()
    running = start_server(tmp_path, dns_server)
    try:
        with running.client("comm_old-secret") as api:
            assert api.get("/v1/agent/api-keys").json()["data"][0]["hold_sends"] is False
            inbox = make_inbox(api)
            assert (inbox["approval"], inbox["approval_timeout_hours"]) == ("none", 72)
            assert api.patch(f"/v1/inboxes/{inbox['id']}", json={"approval": "all"}).status_code == 200
            held = send(api, inbox, make_inbox(api)["address"])
            assert held["status"] == "pending_approval"
            assert [i["id"] for i in api.get("/v1/approvals").json()["data"]] == [held["id"]]
    finally:
        running.stop()


def test_the_event_stream_carries_outbox_transitions_and_the_send(org: Org) -> None:
    hold_all(org)
    types = "message.pending_approval,message.approved,message.sent"
    with org.agent.stream("GET", "/v1/events", params={"inbox_id": org.inbox["id"], "types": types},
                          timeout=20) as response:
        sent = send(org.agent, org.inbox, address("stream"))
        assert org.person.post(f"/v1/messages/{sent['id']}/approve").status_code == 200
        events = next_events(frames(response), 3)
    assert [e["event"] for e in events] == ["message.pending_approval", "message.approved", "message.sent"]
    assert events[0]["data"]["message_id"] == sent["id"] and events[0]["data"]["status"] == "pending_approval"
    assert events[2]["data"]["message"]["metadata"]["delivery_status"] == "queued"
    refused = org.agent.get("/v1/events", params={"types": "message.nope"})
    assert refused.status_code == 400


def test_keys_create_hold_sends_on_the_command_line(relayed: Running) -> None:
    result = commune_server("keys", "create", *cli_target(relayed), "--org", "cli-agent", "--hold-sends")
    assert result.returncode == 0, result.stderr
    assert "wait for approval" in result.stdout
    with relayed.client(result.stdout.strip().splitlines()[-1]) as agent:
        inbox = make_inbox(agent)
        assert send(agent, inbox, make_inbox(agent)["address"])["status"] == "pending_approval"


def test_approving_a_message_whose_send_at_is_ahead_schedules_it(org: Org, smtp_sink: SmtpSink) -> None:
    hold_all(org)
    to = address("approved-later")
    send_at = time.time() + 1.5
    sent = send(org.agent, org.inbox, to, send_at=datetime.fromtimestamp(send_at, UTC).isoformat())
    assert sent["status"] == "pending_approval" and sent["send_at"]
    approved = org.person.post(f"/v1/messages/{sent['id']}/approve")
    assert approved.status_code == 200 and approved.json()["data"]["status"] == "scheduled"
    not_yet(smtp_sink, to, send_at)
    assert org.agent.get("/v1/outbox/counts").json()["data"]["scheduled"] == 1
    wait_until(lambda: arrivals(smtp_sink, to), timeout=20)
    assert time.time() >= send_at - 0.01


def test_scheduled_messages_are_listed_soonest_first(org: Org) -> None:
    later = send(org.agent, org.inbox, address("third"), send_at=at(3000))["id"]
    soon = send(org.agent, org.inbox, address("first"), send_at=at(1000))["id"]
    middle = send(org.agent, org.inbox, address("second"), send_at=at(2000))["id"]
    assert paged_ids(org.agent, "/v1/outbox?status=scheduled", org.inbox["id"]) == [soon, middle, later]
    latest = org.agent.get("/v1/outbox", params={"status": "scheduled", "order": "desc"}).json()["data"]
    assert [i["id"] for i in latest] == [later, middle, soon]


def test_deleting_a_held_message_takes_its_outbox_row(relayed: Running, org: Org) -> None:
    hold_all(org)
    held = send(org.agent, org.inbox, address("deleted"))
    assert org.agent.delete(f"/v1/messages/{held['id']}").status_code == 200
    assert org.person.get("/v1/approvals").json()["data"] == []
    assert org.person.post(f"/v1/messages/{held['id']}/approve").status_code == 404
    left = relayed.run(lambda: relayed.server.services.database.one(
        "SELECT COUNT(*) FROM outbox WHERE id = ?", (held["id"],))[0])
    assert left == 0
