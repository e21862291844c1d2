"""The delivery API (events, suppressions, metrics) through HTTP, the official SDK and the official CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.official_clients import mcp_tools, run_cli
from tests.smtp_sink import SmtpSink, wait_until

REMOTE = "remote-api.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    dns_server.publish(REMOTE, "MX", f"10 mx.{REMOTE}.")
    running = start_server(tmp_path_factory.mktemp("delivery-api"), dns_server, relay=f"127.0.0.1:{smtp_sink.port}", engine=engine)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def org(server: Running, smtp_sink: SmtpSink) -> dict:
    """One organisation with two sent, one bounced and one locally delivered message."""
    key = server.new_key()
    with server.client(key) as api:
        inbox, other = make_inbox(api), make_inbox(api)
        smtp_sink.answer("250 ok", "550 5.1.1 unknown user", "250 ok")
        ids = []
        for name in ("ok1", "bad", "ok2"):
            sent = api.post("/v1/messages/send", json={"to": f"{name}@{REMOTE}", "subject": name, "text": "x",
                                                       "inboxId": inbox["id"]})
            assert sent.status_code == 200, sent.text
            ids.append(sent.json()["data"]["id"])
            wait_until(lambda: final_event(api, ids[-1]))
        local = api.post("/v1/messages/send", json={"to": other["address"], "subject": "local", "text": "x",
                                                    "inboxId": inbox["id"]}).json()["data"]
    return {"key": key, "inbox": inbox, "other": other, "ids": ids, "local": local["id"]}


def final_event(api: httpx.Client, message_id: str) -> str | None:
    found = api.get("/v1/delivery/events", params={"message_id": message_id}).json()["data"]
    kinds = {e["event_type"] for e in found}
    return next((k for k in ("sent", "bounced") if k in kinds), None)


@pytest.fixture
def api(server: Running, org: dict) -> Iterator[httpx.Client]:
    with server.client(org["key"]) as client:
        yield client


def test_events_filters_and_aliases(api: httpx.Client, org: dict) -> None:
    every = api.get("/v1/delivery/events", params={"inbox_id": org["inbox"]["id"], "limit": 100}).json()
    assert {e["event_type"] for e in every["data"]} == {"queued", "sent", "bounced", "delivered"}
    camel = api.get("/v1/delivery/events", params={"inboxId": org["inbox"]["id"], "limit": 100}).json()
    assert camel["data"] == every["data"]
    bounced = api.get("/v1/delivery/events", params={"event_type": "bounced"}).json()["data"]
    assert [(e["recipient"], e["message_id"]) for e in bounced] == [(f"bad@{REMOTE}", org["ids"][1])]
    assert set(bounced[0]) >= {"event_id", "message_id", "event_type", "recipient", "timestamp", "detail"}
    for_one = api.get("/v1/delivery/events", params={"message_id": org["ids"][0]}).json()["data"]
    assert sorted(e["event_type"] for e in for_one) == ["queued", "sent"]
    domain_id = org["inbox"]["domain_id"]
    assert api.get("/v1/delivery/events", params={"domainId": domain_id, "limit": 100}).json()["data"] == every["data"]


def test_events_pages_with_a_cursor(api: httpx.Client) -> None:
    first = api.get("/v1/delivery/events", params={"limit": 3}).json()
    assert first["has_more"] is True and len(first["data"]) == 3
    rest = api.get("/v1/delivery/events", params={"limit": 100, "cursor": first["next_cursor"]}).json()
    everything = api.get("/v1/delivery/events", params={"limit": 100}).json()["data"]
    assert first["data"] + rest["data"] == everything
    assert rest["has_more"] is False


def test_bad_queries_are_400_and_other_orgs_are_404(server: Running, api: httpx.Client) -> None:
    assert api.get("/v1/delivery/events", params={"event_type": "exploded"}).status_code == 400
    assert "limit" in api.get("/v1/delivery/events", params={"limit": "lots"}).json()["error"]
    assert api.get("/v1/delivery/events", params={"cursor": "garbage"}).status_code == 400
    assert "period" in api.get("/v1/delivery/metrics", params={"period": "forever"}).json()["error"]
    with server.client(server.new_key()) as stranger:
        foreign = make_inbox(stranger)
        assert stranger.get("/v1/delivery/events").json()["data"] == []
    assert api.get("/v1/delivery/events", params={"inbox_id": foreign["id"]}).status_code == 404
    assert api.get("/v1/delivery/suppressions", params={"inboxId": foreign["id"]}).status_code == 404


def test_metrics_are_fractions_over_the_period(api: httpx.Client, org: dict) -> None:
    metrics = api.get("/v1/delivery/metrics", params={"inbox_id": org["inbox"]["id"], "period": "24h"}).json()["data"]
    assert metrics["sent"] == 2 and metrics["bounced"] == 1 and metrics["delivered"] == 1 and metrics["failed"] == 0
    assert metrics["delivery_rate"] == pytest.approx(0.75)
    assert metrics["bounce_rate"] == pytest.approx(0.25)
    assert metrics["complaint_rate"] == 0
    assert metrics["period"] == "24h"
    empty = api.get("/v1/delivery/metrics", params={"inboxId": org["other"]["id"], "period": "30d"}).json()["data"]
    assert empty["sent"] == 0 and empty["delivery_rate"] == 0


def test_suppressions_add_list_remove_and_audit(server: Running, api: httpx.Client, org: dict) -> None:
    listed = api.get("/v1/delivery/suppressions").json()["data"]
    assert [(s["email"], s["reason"]) for s in listed] == [(f"bad@{REMOTE}", "hard_bounce")]
    added = api.post("/v1/delivery/suppressions", json={"email": "Unsub@Remote-Api.test", "reason": "unsubscribe",
                                                        "inboxId": org["inbox"]["id"]})
    assert added.status_code == 201, added.text
    assert added.json()["data"]["email"] == "unsub@remote-api.test"
    by_inbox = api.get("/v1/delivery/suppressions", params={"inbox_id": org["inbox"]["id"]}).json()["data"]
    assert {s["email"] for s in by_inbox} == {"unsub@remote-api.test", f"bad@{REMOTE}"}
    refused = api.post("/v1/messages/send", json={"to": "unsub@remote-api.test", "subject": "s", "text": "t",
                                                  "inboxId": org["inbox"]["id"]})
    assert refused.status_code == 400
    assert api.post("/v1/delivery/suppressions", json={"email": "not an address"}).status_code == 400
    assert "email" in api.post("/v1/delivery/suppressions", json={}).json()["error"]
    removed = api.delete("/v1/delivery/suppressions/unsub@remote-api.test")
    assert removed.status_code == 200 and removed.json()["data"]["ok"] is True
    assert api.delete("/v1/delivery/suppressions/unsub@remote-api.test").status_code == 404
    assert api.get("/v1/delivery/suppressions", params={"email": "unsub@remote-api.test"}).json()["data"] == []

    services = server.server.services
    actions = server.run(lambda: [r["action"] for r in services.database.query(
        "SELECT action FROM audit_logs WHERE target_id = 'unsub@remote-api.test' ORDER BY created_at")])
    assert actions == ["suppression.added", "suppression.removed"]


def test_scopes_are_enforced(server: Running) -> None:
    with server.client(server.new_key(["messages:read"])) as client:
        assert client.get("/v1/delivery/events").status_code == 403
    with server.client(server.new_key(["delivery:read"])) as client:
        assert client.get("/v1/delivery/suppressions").status_code == 200
        assert client.post("/v1/delivery/suppressions", json={"email": "a@b.test"}).status_code == 403


def test_official_sdk_delivery_calls(server: Running, org: dict) -> None:
    from commune import CommuneClient

    client = CommuneClient(api_key=org["key"], base_url=server.url)
    metrics = client.delivery.metrics(inbox_id=org["inbox"]["id"], period="7d")
    assert metrics.sent == 2 and metrics.bounced == 1
    events = client.delivery.events(message_id=org["ids"][1])
    assert sorted(e.event_type for e in events) == ["bounced", "queued"]
    bounced = next(e for e in events if e.event_type == "bounced")
    assert bounced.recipient == f"bad@{REMOTE}" and "550" in bounced.detail
    suppressions = client.delivery.suppressions(inbox_id=org["inbox"]["id"])
    assert [s.email for s in suppressions] == [f"bad@{REMOTE}"]
    assert suppressions[0].suppressed_at


def test_official_cli_delivery_commands(server: Running, org: dict, tmp_path: Path) -> None:
    code, printed = run_cli(server.url, org["key"], tmp_path, "delivery", "check", f"bad@{REMOTE}")
    assert code == 1
    assert printed["suppressed"] is True and printed["reason"] == "hard_bounce" and printed["suppressedAt"]
    code, printed = run_cli(server.url, org["key"], tmp_path, "delivery", "check", f"ok1@{REMOTE}",
                            "--inbox-id", org["inbox"]["id"])
    assert code == 0 and printed["suppressed"] is False
    code, printed = run_cli(server.url, org["key"], tmp_path, "delivery", "metrics", "--inbox-id", org["inbox"]["id"])
    assert code == 0 and printed["data"]["bounced"] == 1


def test_official_mcp_delivery_tools(server: Running, org: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = mcp_tools(monkeypatch, server.url, org["key"])
    stats = json.loads(tools.get_deliverability_stats(inbox_id=org["inbox"]["id"]))
    assert stats["sent"] == 2 and stats["bounced"] == 1 and stats["bounce_rate"] == pytest.approx(0.25)
    suppressed = json.loads(tools.get_suppressions(inbox_id=org["inbox"]["id"]))
    assert [s["email"] for s in suppressed] == [f"bad@{REMOTE}"]
    events = json.loads(tools.get_delivery_events(message_id=org["ids"][0]))
    assert sorted(e["event_type"] for e in events) == ["queued", "sent"]
