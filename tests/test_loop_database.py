"""No database statement runs on the event loop outside `database.run` (what keeps PostgreSQL's network
round trips off the loop), on the request paths, SMTP ingest, sending, webhooks, live events and workers.

With `COMMUNE_DEBUG_LOOP_DB` set, the SQLite database records each statement that runs on an event
loop while no `database.run` call is under way; on SQLite `run` is a direct call, so this is how a
missed call site shows up without PostgreSQL.
"""

from __future__ import annotations

import json
import smtplib
import threading
from email.message import EmailMessage

import httpx
import pytest

from backend.store.database import WATCH_LOOP_ENV
from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.smtp_sink import SmtpSink
from tests.waiting import wait_until
from tests.webhook_receiver import WebhookReceiver

PARTNER = "partner-loop.test"


@pytest.fixture
def watched(tmp_path, dns_server, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(WATCH_LOOP_ENV, "1")
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    # Retention sweeps every 0.2 s and webhook retries come fast, so the workers run during the test too.
    server = start_server(tmp_path, dns_server, relay=f"127.0.0.1:{smtp_sink.port}", retention_interval=0.2,
                          webhook_backoff=0.1)
    yield server
    server.stop()


def on_loop(running: Running) -> list[str]:
    statements = running.server.services.database.loop_statements
    assert statements is not None
    return list(statements)


def smtp_send(running: Running, recipient: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "Customer <customer@example.net>"
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content("Your code is 481516.\nhttps://example.net/confirm?token=abc\n")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as client:
        client.send_message(message)


def exercise_api(client: httpx.Client, inbox: dict, thread_id: str, message_id: str) -> None:
    """Every resource family once, reads and writes, each answered without a server error."""
    calls = [
        ("GET", "/v1/domains", None), ("GET", f"/v1/domains/{inbox['domain_id']}", None),
        ("GET", "/v1/inboxes", None), ("GET", f"/v1/inboxes/{inbox['id']}", None),
        ("PATCH", f"/v1/inboxes/{inbox['id']}", {"name": "Support desk"}),
        ("GET", "/v1/threads", {"inbox_id": inbox["id"]}), ("GET", f"/v1/threads/{thread_id}/messages", None),
        ("GET", f"/v1/threads/{thread_id}", None),
        ("PATCH", f"/v1/threads/{thread_id}", {"status": "open", "add_tags": ["billing"]}),
        ("GET", "/v1/messages", {"inbox_id": inbox["id"]}), ("GET", f"/v1/messages/{message_id}", None),
        ("PATCH", f"/v1/messages/{message_id}", {"add_labels": ["flagged"]}),
        ("GET", "/v1/search/threads", {"q": "code"}), ("GET", "/v1/contacts", None),
        ("GET", "/v1/delivery/events", None), ("GET", "/v1/delivery/metrics", None),
        ("POST", "/v1/delivery/suppressions", {"email": "gone@example.org"}),
        ("GET", "/v1/webhooks/deliveries", None), ("GET", "/v1/webhooks/health", None),
        ("GET", "/v1/audit-logs", None), ("GET", "/v1/agent/org", None), ("GET", "/v1/agent/api-keys", None),
        ("GET", "/v1/outbox/counts", None), ("GET", "/v1/approvals", None), ("GET", "/v1/drafts", None),
        ("GET", "/v1/dmarc/reports", {"domain": inbox["domain_id"]}),
        ("GET", "/v1/messages/wait", {"inbox_id": inbox["id"], "after": message_id, "timeout": "0"}),
        ("GET", "/v1/messages/wait", {"inbox_id": inbox["id"], "timeout": "0", "code": "true"}),
    ]
    for method, path, payload in calls:
        if method == "GET":
            response = client.get(path, params=payload)
        else:
            response = client.request(method, path, json=payload)
        assert response.status_code < 500, (method, path, response.text)
    upload = client.post("/v1/attachments/upload", content=b"%PDF-1.4 quote", headers={"X-Filename": "q.pdf"})
    assert upload.status_code == 201, upload.text
    attachment_id = upload.json()["data"]["attachment_id"]
    url = client.get(f"/v1/attachments/{attachment_id}/url").json()["data"]["url"]
    assert client.get(url).content == b"%PDF-1.4 quote"
    draft = client.post("/v1/drafts", json={"inbox_id": inbox["id"], "to": [f"someone@{PARTNER}"],
                                            "subject": "Draft", "text": "Later"})
    assert draft.status_code == 201, draft.text
    sent = client.post(f"/v1/drafts/{draft.json()['data']['id']}/send")
    assert sent.status_code in (200, 202), sent.text


def test_no_statement_runs_on_the_event_loop_outside_database_run(
        watched: Running, smtp_sink: SmtpSink) -> None:
    # Start-up is neither a request nor a worker path: only what follows it counts.
    watched.server.services.database.loop_statements.clear()  # type: ignore[union-attr]
    with watched.client() as admin:
        created = admin.post("/v1/agent/api-keys", json={"name": "loop", "scopes": ["read", "write"]})
        assert created.status_code == 201, created.text
    receiver = WebhookReceiver()
    # A key never used before is looked up in the database while its request's admission waits.
    key = created.json()["data"]["key"]
    with watched.client(key) as client, watched.client(key) as live:
        try:
            inbox = make_inbox(client, webhook={"endpoint": receiver.url})
            stream_lines: list[str] = []

            def listen() -> None:
                with live.stream("GET", "/v1/events", params={"inbox_id": inbox["id"]}) as response:
                    for line in response.iter_lines():
                        stream_lines.append(line)
                        if line.startswith("event: message.received"):
                            return

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            wait_until(lambda: stream_lines, bool)
            smtp_send(watched, inbox["email"], "Your verification code")
            listener.join(15)
            assert any(line == "event: message.received" for line in stream_lines), stream_lines
            hits = receiver.wait_for(1)
            assert json.loads(hits[0].body)["event"] == "inbound"
            listed = client.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
            exercise_api(client, inbox, listed[0]["thread_id"], listed[0]["id"])
            send = client.post("/v1/messages/send", json={"inbox_id": inbox["id"], "to": [f"far@{PARTNER}"],
                                                          "subject": "Leaving", "text": "Hello"},
                               headers={"Idempotency-Key": "loop-1"})
            assert send.status_code == 200, send.text
            relayed = wait_until(lambda: [r for r in smtp_sink.received if f"far@{PARTNER}" in r.rcpt_tos], bool)
            assert relayed, smtp_sink.received
            wait_until(lambda: client.get("/v1/delivery/events").json()["data"], bool)
            deleted = client.delete(f"/v1/threads/{listed[0]['thread_id']}")
            assert deleted.status_code == 200, deleted.text
        finally:
            receiver.close()
    assert on_loop(watched) == [], "\n\n".join(on_loop(watched))


def test_the_guard_sees_a_statement_run_on_the_loop(watched: Running) -> None:
    """The check above can fail: a query made on the loop without `run` is recorded, with where it ran."""
    database = watched.server.services.database
    database.loop_statements.clear()  # type: ignore[union-attr]
    watched.run(lambda: database.one("SELECT count(*) FROM inboxes"))
    recorded = on_loop(watched)
    assert len(recorded) == 1 and recorded[0].startswith("SELECT count(*) FROM inboxes"), recorded
    assert "test_loop_database.py" in recorded[0]

    async def through_run() -> object:
        return await database.run(database.one, "SELECT count(*) FROM inboxes")

    watched.run(through_run)
    assert len(on_loop(watched)) == 1
