"""Thread triage through the official CLI and MCP tools: status, assignee, tags, metadata."""

from __future__ import annotations

import json

import pytest
from commune.types import Thread

from tests.mailtools import ingest, make_inbox
from tests.official_clients import mcp_tools, run_cli


@pytest.fixture
def thread(running, api) -> dict:
    inbox = make_inbox(api)
    message, _ = ingest(running, inbox["id"], subject="Refund request", text="I want my money back")
    return {"id": message["thread_id"], "inbox": inbox}


def test_cli_triages_a_thread(running, api, thread, tmp_path) -> None:
    key = api.headers["authorization"].split()[1]
    tid = thread["id"]

    def cli(*args: str):
        code, out = run_cli(running.url, key, tmp_path, "threads", *args)
        assert code == 0, out
        return out

    shown = cli("metadata", tid)["data"]
    assert shown["thread_id"] == tid and shown["status"] == "open" and shown["tags"] == []
    Thread.model_validate(shown)
    assert cli("set-status", tid, "needs_reply")["data"]["status"] == "needs_reply"
    assert cli("assign", tid, "--to", "alice@example.com")["data"]["assigned_to"] == "alice@example.com"
    assert cli("tags", "add", tid, "refund", "vip", "refund")["data"]["tags"] == ["refund", "vip"]
    assert cli("tags", "remove", tid, "refund")["data"]["tags"] == ["vip"]
    assert cli("assign", tid)["data"]["assigned_to"] is None

    listed = api.get("/v1/threads", params={"inbox_id": thread["inbox"]["id"]}).json()["data"]
    assert [(t["thread_id"], t["status"], t["tags"]) for t in listed] == [(tid, "needs_reply", ["vip"])]

    code, _ = run_cli(running.url, key, tmp_path, "threads", "set-status", tid, "snoozed")
    assert code != 0


def test_mcp_tools_triage_a_thread(running, api, thread, monkeypatch) -> None:
    key = api.headers["authorization"].split()[1]
    mcp = mcp_tools(monkeypatch, running.url, key)
    tid = thread["id"]
    assert json.loads(mcp.set_thread_status(tid, "waiting"))["status"] == "waiting"
    assert json.loads(mcp.tag_thread(tid, "urgent, billing,urgent"))["tags"] == ["urgent", "billing"]
    assert json.loads(mcp.untag_thread(tid, "urgent"))["tags"] == ["billing"]
    assert json.loads(mcp.assign_thread(tid, "agent-7"))["assigned_to"] == "agent-7"
    assert json.loads(mcp.assign_thread(tid, None))["assigned_to"] is None
    metadata = json.loads(mcp.get_thread_metadata(tid))
    assert metadata == {"thread_id": tid, "tags": ["billing"], "status": "waiting", "assigned_to": None}


def test_bad_triage_input_is_a_400_naming_the_field(api, thread) -> None:
    tid = thread["id"]
    cases = [
        ("PUT", "status", {"status": "snoozed"}, "status"),
        ("PATCH", "", {"status": None}, "status"),
        ("PATCH", "", {"tags": "vip"}, "tags"),
        ("PATCH", "", {"assignedTo": 42}, "assignedTo"),
        ("POST", "tags", {"tags": []}, "tags"),
        ("POST", "tags", {"tags": [" "]}, "tags"),
        ("POST", "tags", {"tags": ["x" * 65]}, "tags"),
        ("POST", "tags/remove", {}, "tags"),
        ("PUT", "assign", {}, "assigned_to"),
    ]
    for method, suffix, body, field in cases:
        path = f"/v1/threads/{tid}" + (f"/{suffix}" if suffix else "")
        response = api.request(method, path, json=body)
        assert response.status_code == 400, (method, path, body, response.text)
        assert field in response.json()["error"], response.text
    assert api.post(f"/v1/threads/{tid}/tags", content=b"[1,").status_code == 400
    assert api.get(f"/v1/threads/{tid}/metadata").json()["data"]["status"] == "open"


def test_tag_limit_holds(api, thread) -> None:
    tid = thread["id"]
    assert api.post(f"/v1/threads/{tid}/tags", json={"tags": [f"t{n}" for n in range(50)]}).status_code == 200
    response = api.post(f"/v1/threads/{tid}/tags", json={"tags": ["one-too-many"]})
    assert response.status_code == 400 and "tags" in response.json()["error"]
    assert len(api.get(f"/v1/threads/{tid}/metadata").json()["data"]["tags"]) == 50


def test_another_orgs_thread_is_404_on_every_triage_route(running, thread) -> None:
    tid = thread["id"]
    with running.client(running.new_key()) as stranger:
        calls = [
            ("GET", "", None), ("PATCH", "", {"status": "closed"}), ("POST", "/tags", {"tags": ["x"]}),
            ("DELETE", "/tags", {"tags": ["x"]}), ("POST", "/tags/remove", {"tags": ["x"]}),
            ("GET", "/metadata", None), ("PUT", "/status", {"status": "closed"}),
            ("PUT", "/assign", {"assigned_to": "me"}),
        ]
        for method, suffix, body in calls:
            response = stranger.request(method, f"/v1/threads/{tid}{suffix}", json=body)
            assert response.status_code == 404, (method, suffix, response.text)
    with running.client(running.new_key(["threads:read"])) as reader:
        assert reader.put(f"/v1/threads/{tid}/status", json={"status": "closed"}).status_code == 403
