"""Calls of the official clients that used to fail (issue 13 §1), each through the unmodified client
against the real server: the SDK (`commune-mail` 0.3.4) sync and async, the MCP tools and the CLI."""

from __future__ import annotations

import asyncio
import inspect
import json
import smtplib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from commune import AsyncCommuneClient, CommuneClient
from commune.exceptions import NotFoundError, ValidationError

from tests.conftest import Running, start_server
from tests.official_clients import mcp_tools, run_cli
from tests.smtp_sink import SmtpSink
from tests.test_domain_ownership import publish
from tests.waiting import wait_until

REMOTE = "remote-calls.test"
SCHEMA = {"type": "object", "properties": {"urgency": {"type": "string"}, "topic": {"type": "string"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    dns_server.publish(REMOTE, "MX", f"10 mx.{REMOTE}.")
    running = start_server(tmp_path_factory.mktemp("official-calls"), dns_server,
                           relay=f"127.0.0.1:{smtp_sink.port}", engine=engine)
    yield running
    running.stop()


async def call(result: Any) -> Any:
    """The value of an SDK call, whether the client is the sync or the async one."""
    return await result if inspect.isawaitable(result) else result


def run_with_sdk(server: Running, key: str, flavour: str, scenario: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        if flavour == "async":
            async with AsyncCommuneClient(api_key=key, base_url=server.url) as client:
                await scenario(client)
        else:
            await scenario(CommuneClient(api_key=key, base_url=server.url))

    asyncio.run(main())


def verified_domain(server: Running, key: str, dns_server) -> dict:
    with server.client(key) as api:
        domain = api.post("/v1/domains", json={"name": f"calls-{uuid.uuid4().hex[:8]}.test"}).json()["data"]
        publish(dns_server, api.get(f"/v1/domains/{domain['id']}/records").json()["data"])
        verified = api.post(f"/v1/domains/{domain['id']}/verify").json()["data"]
        assert verified["status"] == "verified", verified
    return domain


def rcpt_answer(server: Running, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", server.server.smtp_port, timeout=10) as client:
        client.ehlo("sender.example")
        client.mail("someone@sender.example")
        return client.rcpt(address)[0]


def deliver(server: Running, address: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "someone@sender.example"
    message["To"] = address
    message["Subject"] = subject
    message.set_content("Urgent: the invoice topic")
    with smtplib.SMTP("127.0.0.1", server.server.smtp_port, timeout=10) as client:
        assert client.send_message(message) == {}


def webhook_extra(inbox: Any, key: str) -> Any:
    return (inbox.webhook.model_extra or {}).get(key)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_empty_webhook_object_removes_the_webhook(server: Running, flavour: str) -> None:
    async def scenario(client: Any) -> None:
        inbox = await call(client.inboxes.create(local_part=f"hook-{flavour}-{uuid.uuid4().hex[:6]}",
                                                 webhook={"endpoint": "https://hooks.example/in"}))
        assert inbox.webhook.endpoint == "https://hooks.example/in"
        cleared = await call(client.inboxes.update(inbox.domain_id, inbox.id, webhook={}))
        assert cleared.webhook is None
        assert (await call(client.inboxes.get(inbox.domain_id, inbox.id))).webhook is None

    run_with_sdk(server, server.new_key(), flavour, scenario)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_inactive_status_refuses_mail_and_reads_back_as_sent(server: Running, flavour: str) -> None:
    async def scenario(client: Any) -> None:
        inbox = await call(client.inboxes.create(local_part=f"quiet-{flavour}-{uuid.uuid4().hex[:6]}"))
        other = await call(client.inboxes.create(local_part=f"talker-{flavour}-{uuid.uuid4().hex[:6]}"))
        updated = await call(client.inboxes.update(inbox.domain_id, inbox.id, status="inactive"))
        assert updated.status == "inactive"
        assert (await call(client.inboxes.get(inbox.domain_id, inbox.id))).status == "inactive"
        assert rcpt_answer(server, inbox.address) == 550
        with pytest.raises(ValidationError) as refused:
            await call(client.messages.send(to=inbox.address, subject="Hello", text="x", inbox_id=other.id))
        assert "Mailbox disabled" in str(refused.value)

        assert (await call(client.inboxes.update(inbox.domain_id, inbox.id, status="active"))).status == "active"
        assert rcpt_answer(server, inbox.address) == 250

    run_with_sdk(server, server.new_key(), flavour, scenario)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_extraction_schema_inside_webhook_is_kept(server: Running, flavour: str) -> None:
    async def scenario(client: Any) -> None:
        inbox = await call(client.inboxes.create(local_part=f"extract-{flavour}-{uuid.uuid4().hex[:6]}"))
        updated = await call(client.inboxes.update(
            inbox.domain_id, inbox.id, webhook={"endpoint": "https://hooks.example/x", "extractionSchema": SCHEMA}))
        assert updated.extraction_schema == SCHEMA
        assert updated.webhook.endpoint == "https://hooks.example/x"
        assert webhook_extra(updated, "extractionSchema") == SCHEMA
        fetched = await call(client.inboxes.get(inbox.domain_id, inbox.id))
        assert fetched.extraction_schema == SCHEMA and webhook_extra(fetched, "extractionSchema") == SCHEMA

        # Changing only the endpoint keeps the schema; removing the webhook keeps it on the inbox.
        moved = await call(client.inboxes.update(inbox.domain_id, inbox.id,
                                                 webhook={"endpoint": "https://hooks.example/y"}))
        assert moved.extraction_schema == SCHEMA and webhook_extra(moved, "extractionSchema") == SCHEMA
        unhooked = await call(client.inboxes.update(inbox.domain_id, inbox.id, webhook={}))
        assert unhooked.webhook is None and unhooked.extraction_schema == SCHEMA

        # No model applies the schema on this server: the message arrives, `extracted_data` stays empty.
        deliver(server, inbox.address, "Invoice question")
        [message] = await call(client.messages.list(inbox_id=inbox.id))
        assert message.metadata.subject == "Invoice question"
        assert message.metadata.extracted_data is None

    run_with_sdk(server, server.new_key(), flavour, scenario)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_send_with_domain_id_creates_agent_inbox_on_a_verified_domain(server: Running, dns_server,
                                                                     flavour: str) -> None:
    org = f"org-calls-{uuid.uuid4().hex[:8]}"
    key, admin_key = server.new_key(org=org), server.new_key(["admin"], org=org)
    domain = verified_domain(server, key, dns_server)
    with server.client(key) as api:
        pending = api.post("/v1/domains", json={"name": f"pending-{uuid.uuid4().hex[:8]}.test"}).json()["data"]
    foreign = verified_domain(server, server.new_key(), dns_server)
    agent = f"agent@{domain['name']}"

    async def scenario(client: Any) -> None:
        reader = await call(client.inboxes.create(local_part=f"reader-{flavour}-{uuid.uuid4().hex[:6]}"))
        first = await call(client.messages.send(to=reader.address, subject="First from the domain", text="Hi",
                                                domain_id=domain["id"]))
        second = await call(client.messages.send(to=reader.address, subject="Second", text="Again",
                                                 domain_id=domain["id"]))
        assert first.status == second.status == "delivered"
        created = [i for i in await call(client.inboxes.list(domain["id"])) if i.address == agent]
        assert len(created) == 1
        [received, _] = await call(client.messages.list(inbox_id=reader.id, order="asc"))
        sender = next(p.identity for p in received.participants if p.role == "sender")
        assert sender == agent

        with pytest.raises(ValidationError) as unverified:
            await call(client.messages.send(to=reader.address, subject="x", text="y", domain_id=pending["id"]))
        assert "domainId" in str(unverified.value)
        assert await call(client.inboxes.list(pending["id"])) == []
        with pytest.raises(NotFoundError):
            await call(client.messages.send(to=reader.address, subject="x", text="y", domain_id=foreign["id"]))

    run_with_sdk(server, key, flavour, scenario)
    with server.client(admin_key) as admin:
        entries = admin.get("/v1/audit-logs", params={"action": "inbox.created"}).json()["data"]
    assert [e for e in entries if agent in json.dumps(e)], entries


def test_mcp_create_inbox_display_name_wins_over_name(server: Running, monkeypatch) -> None:
    key = server.new_key()
    tools = mcp_tools(monkeypatch, server.url, key)
    both = json.loads(tools.create_inbox(local_part=f"desk-{uuid.uuid4().hex[:6]}", name="desk-agent",
                                         display_name="Support Desk"))
    assert both["displayName"] == "Support Desk"
    alone = json.loads(tools.create_inbox(local_part=f"solo-{uuid.uuid4().hex[:6]}", name="Solo Agent"))
    assert alone["displayName"] == "Solo Agent"
    sdk = CommuneClient(api_key=key, base_url=server.url)
    assert sdk.inboxes.get(both["domain_id"], both["id"]).display_name == "Support Desk"


def bounce_once(server: Running, smtp_sink: SmtpSink, key: str, domain_id: str) -> None:
    smtp_sink.answer("550 5.1.1 unknown user")
    with server.client(key) as api:
        sender = api.post(f"/v1/domains/{domain_id}/inboxes", json={"local_part": "news"}).json()["data"]
        sent = api.post("/v1/messages/send", json={"to": f"gone@{REMOTE}", "subject": "Hello", "text": "x",
                                                   "inboxId": sender["id"]})
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["data"]["id"]

        def kinds() -> set[str]:
            events = api.get("/v1/delivery/events", params={"message_id": message_id}).json()["data"]
            return {e["event_type"] for e in events}

        assert "bounced" in wait_until(kinds, lambda found: bool({"sent", "bounced"} & found))


def test_cli_doctor_and_context_see_the_delivery_figures(server: Running, dns_server, smtp_sink: SmtpSink,
                                                        tmp_path: Path) -> None:
    key = server.new_key()
    domain = verified_domain(server, key, dns_server)
    bounce_once(server, smtp_sink, key, domain["id"])

    code, doctor = run_cli(server.url, key, tmp_path, "doctor")
    assert code == 0, doctor
    [check] = [c for c in doctor["checks"] if c["name"] == "deliverability"]
    assert check["status"] == "fail" and check["details"]["bounce_rate"] == 1.0
    assert doctor["status"] == "fail"

    code, context = run_cli(server.url, key, tmp_path, "context")
    assert code == 0, context
    # The same dict the human `context` panel prints; it showed "—" for each of these.
    figures = {k: context["delivery"].get(k) for k in ("sent", "delivered", "bounced", "complained", "failed")}
    assert figures == {"sent": 0, "delivered": 0, "bounced": 1, "complained": 0, "failed": 0}


def test_metrics_reach_the_sdk_inside_data_and_the_cli_at_the_top_level(server: Running) -> None:
    key = server.new_key()
    sdk = CommuneClient(api_key=key, base_url=server.url)
    assert sdk.delivery.metrics().bounce_rate == 0.0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
        body = api.get("/v1/delivery/metrics").json()
    assert {k: body[k] for k in body["data"]} == body["data"]
