"""Codes and links for agents through the real server (issue 13 §4): mail over SMTP, `extracted` on every
message read, `wait` for the next message with a code or a link, the webhook payload, mail stored before
the upgrade, hostile HTML, and the official SDK reading it all."""

from __future__ import annotations

import json
import smtplib
import sqlite3
import threading
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from commune import CommuneClient
from commune.types import Message

from backend.store.migrations import MESSAGE_EXTRACTED, MIGRATIONS
from tests.conftest import start_server
from tests.mailtools import make_inbox
from tests.test_live import frames, next_events
from tests.test_webhooks import hooked_inbox, verified
from tests.webhook_receiver import WebhookReceiver

SIGNUP_TEXT = """\
Welcome to Acme!

Your verification code is 482913. It expires in 10 minutes.

Or confirm your address here: https://acme.example/verify?token=abc123

If you did not sign up, ignore this mail.
"""
SIGNUP_HTML = """\
<html><body>
<p>Welcome to Acme!</p>
<p>Your verification code is <b>482913</b>. It expires in 10 minutes.</p>
<p><a href="https://acme.example/verify?token=abc123">Confirm my email</a></p>
<p><a href="https://acme.example/help">Help centre</a> &middot; <a href="mailto:help@acme.example">Write to us</a></p>
</body></html>
"""


def deliver(running, to: str, subject: str, text: str, html: str | None = None) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Acme <noreply@acme.example>", to, subject
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as smtp:
        assert smtp.send_message(mail) == {}


def only_message(api: httpx.Client, inbox: dict) -> dict:
    [message] = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    return message


def wait_in_thread(api: httpx.Client, params: dict) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        response = api.get("/v1/messages/wait", params={"timeout": 30, **params}, timeout=45)
        result.update(status=response.status_code, body=response.json())

    waiter = threading.Thread(target=run)
    waiter.start()
    return waiter, result


def test_a_sign_up_mail_over_smtp_shows_its_code_and_links_on_every_read(running, api) -> None:
    inbox = make_inbox(api)
    deliver(running, inbox["address"], "Confirm your Acme account", SIGNUP_TEXT, SIGNUP_HTML)
    listed = only_message(api, inbox)

    response = api.get(f"/v1/messages/{listed['id']}")
    assert response.status_code == 200
    message = response.json()["data"]
    assert message["extracted"]["codes"] == ["482913"]
    assert message["extracted"]["links"] == [
        {"url": "https://acme.example/verify?token=abc123", "text": "Confirm my email"},
        {"url": "https://acme.example/help", "text": "Help centre"},
    ]
    assert listed["extracted"] == message["extracted"]
    in_thread = api.get(f"/v1/threads/{message['thread_id']}/messages").json()["data"]
    assert [m["extracted"] for m in in_thread] == [message["extracted"]]
    Message.model_validate(message)
    metadata = Message.model_validate(message).metadata
    assert metadata.extracted_data is None

    stored = running.run(lambda: running.server.services.database.one(
        "SELECT extracted FROM messages WHERE id = ?", (message["id"],))["extracted"])
    assert json.loads(stored) == message["extracted"], "a message is extracted once, then read back"

    assert api.get("/v1/messages/msg_doesnotexist").status_code == 404
    with running.client(running.new_key()) as stranger:
        assert stranger.get(f"/v1/messages/{message['id']}").status_code == 404


def test_wait_for_a_code_skips_a_message_without_one(running, api) -> None:
    inbox = make_inbox(api)
    deliver(running, inbox["address"], "Hello", "Just saying hello, no code here.\n")
    start = only_message(api, inbox)["id"]

    waiter, result = wait_in_thread(api, {"inbox_id": inbox["id"], "after": start, "code": "true"})
    deliver(running, inbox["address"], "Our newsletter", "Read our news at https://acme.example/news\n")
    deliver(running, inbox["address"], "Your login code", "Your login code: 771204\n")
    waiter.join(45)

    assert result["status"] == 200
    [found] = result["body"]["data"]
    assert found["metadata"]["subject"] == "Your login code"
    assert found["extracted"]["codes"] == ["771204"]
    assert result["body"]["after"] == found["id"]
    nothing = api.get("/v1/messages/wait", params={"inbox_id": inbox["id"], "after": found["id"],
                                                   "code": "true", "timeout": 0})
    assert nothing.status_code == 200 and nothing.json()["data"] == []


def test_wait_for_a_link_matches_the_url_text_only(running, api) -> None:
    inbox = make_inbox(api)
    deliver(running, inbox["address"], "Welcome", "Start here: https://acme.example/welcome\n")
    deliver(running, inbox["address"], "Reset your password",
            "Reset it: https://acme.example/Reset-Password?t=9\n")
    since = {"inbox_id": inbox["id"], "after": "2000-01-01T00:00:00Z", "timeout": 0}

    found = api.get("/v1/messages/wait", params={**since, "link_contains": "reset-password"}).json()["data"]
    assert [m["metadata"]["subject"] for m in found] == ["Reset your password"]
    assert api.get("/v1/messages/wait", params={**since, "link_contains": "unsubscribe"}).json()["data"] == []
    both = api.get("/v1/messages/wait", params={**since, "link_contains": "acme.example/"}).json()["data"]
    assert [m["metadata"]["subject"] for m in both] == ["Welcome", "Reset your password"]

    waiter, result = wait_in_thread(api, {"inbox_id": inbox["id"], "after": both[-1]["id"],
                                          "link_contains": "/magic/"})
    deliver(running, inbox["address"], "Another welcome", "Start here: https://acme.example/welcome\n")
    deliver(running, inbox["address"], "Sign in", "<a> Sign in: https://acme.example/magic/xyz\n")
    waiter.join(45)
    assert [m["metadata"]["subject"] for m in result["body"]["data"]] == ["Sign in"]


@pytest.mark.parametrize("params, field", [
    ({"code": "maybe"}, "code"),
    ({"link_contains": "x" * 501}, "link_contains"),
])
def test_wait_filters_reject_bad_values(api, params, field) -> None:
    inbox = make_inbox(api)
    response = api.get("/v1/messages/wait", params={"inbox_id": inbox["id"], "timeout": 0, **params})
    assert response.status_code == 400 and field in response.json()["error"]


def test_hostile_html_yields_no_crash_and_no_script_links(running, api) -> None:
    inbox = make_inbox(api)
    nested = "<div>" * 20_000 + "deep" + "</div>" * 20_000
    links = "".join(f'<a href="javascript:alert({i})">Click {i}</a>' for i in range(2_000))
    sneaky = ('<a href=" JaVaScRiPt:alert(1)">x</a><a href="java&#x73;cript:alert(2)">y</a>'
              '<a href="data:text/html,<script>alert(3)</script>">z</a><a href="vbscript:msgbox">w</a>'
              '<a href="https://fine.example/ok">Fine</a><a href="//evil.example/x">r</a>')
    html = f"<html><body>{sneaky}{nested}{links}<p>{'A' * 1_500_000}</p><a href='https://x'><b><i>" \
           f"{'<span>' * 5000}</body>"
    deliver(running, inbox["address"], "Hostile", "see html\n", html)
    message = only_message(api, inbox)
    shown = api.get(f"/v1/messages/{message['id']}")
    assert shown.status_code == 200
    urls = [link["url"] for link in shown.json()["data"]["extracted"]["links"]]
    assert "https://fine.example/ok" in urls
    assert all(url.lower().startswith(("http://", "https://")) for url in urls), urls
    assert api.get("/v1/health").status_code == 200


def test_the_webhook_payload_and_the_event_stream_carry_the_codes_and_links(running, api) -> None:
    receiver = WebhookReceiver()
    try:
        inbox = hooked_inbox(api, receiver.url, ["inbound"])
        with api.stream("GET", "/v1/events", params={"inbox_id": inbox["id"], "types": "message.received"},
                        timeout=20) as response:
            deliver(running, inbox["address"], "Confirm your Acme account", SIGNUP_TEXT, SIGNUP_HTML)
            (event,) = next_events(frames(response), 1)
        payload = verified(receiver.wait_for(1)[0], inbox["webhook"]["secret"])
    finally:
        receiver.close()
    assert payload["extracted"]["codes"] == ["482913"]
    assert payload["extracted"]["links"][0] == {"url": "https://acme.example/verify?token=abc123",
                                                "text": "Confirm my email"}
    assert payload["message"]["extracted"] == payload["extracted"]
    assert payload["extractedData"] is None
    assert event["data"]["message"]["extracted"] == payload["extracted"]
    assert only_message(api, inbox)["extracted"] == payload["extracted"]


def test_mail_stored_before_the_upgrade_gets_its_codes_and_links(tmp_path: Path, dns_server) -> None:
    """A data directory from before `messages.extracted`: old mail is extracted when first read, and kept."""
    before = MIGRATIONS.index(MESSAGE_EXTRACTED)
    conn = sqlite3.connect(tmp_path / "commune.db", isolation_level=None)
    for script in MIGRATIONS[:before]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {before}")
    at = "2024-01-01T00:00:00.000Z"
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org-old', 'old', ?)", (at,))
    conn.execute("INSERT INTO domains (id, org_id, name, status, records, created_at)"
                 " VALUES ('d-old', 'org-old', 'old.test', 'pending', '[]', ?)", (at,))
    conn.execute("INSERT INTO inboxes (id, org_id, domain_id, local_part, address, created_at)"
                 " VALUES ('i-old', 'org-old', 'd-old', 'desk', 'desk@old.test', ?)", (at,))
    conn.execute("INSERT INTO threads (id, org_id, inbox_id, domain_id, subject, first_message_at, last_message_at,"
                 " message_count) VALUES ('t-old', 'org-old', 'i-old', 'd-old', 'Your code', ?, ?, 1)", (at, at))
    conn.execute("INSERT INTO messages (id, org_id, thread_id, inbox_id, domain_id, direction, sender, participants,"
                 " subject, text_body, html_body, created_at) VALUES ('msg_old', 'org-old', 't-old', 'i-old',"
                 " 'd-old', 'inbound', 'noreply@acme.example', '[]', 'Your code', ?, ?, ?)",
                 (SIGNUP_TEXT, SIGNUP_HTML, at))
    conn.close()

    running = start_server(tmp_path, dns_server)
    try:
        with running.client(running.new_key(["read"], org="old")) as api:
            [message] = api.get("/v1/messages", params={"inbox_id": "i-old"}).json()["data"]
            assert message["extracted"]["codes"] == ["482913"]
            assert message["extracted"]["links"][0]["text"] == "Confirm my email"
            stored = running.run(lambda: running.server.services.database.one(
                "SELECT extracted FROM messages WHERE id = 'msg_old'")["extracted"])
            assert json.loads(stored) == message["extracted"]
            assert api.get("/v1/messages/msg_old").json()["data"]["extracted"] == message["extracted"]
    finally:
        running.stop()


def test_the_official_sdk_reads_messages_with_their_codes(running) -> None:
    key = running.new_key()
    with running.client(key) as api:
        inbox = make_inbox(api)
    deliver(running, inbox["address"], "Confirm your Acme account", SIGNUP_TEXT, SIGNUP_HTML)
    client = CommuneClient(api_key=key, base_url=running.url)
    [message] = client.messages.list(inbox_id=inbox["id"])
    assert message.metadata.subject == "Confirm your Acme account"
    assert message.model_extra["extracted"]["codes"] == ["482913"]
    [in_thread] = client.threads.messages(message.thread_id)
    assert in_thread.message_id == message.message_id
    assert in_thread.model_extra["extracted"] == message.model_extra["extracted"]
