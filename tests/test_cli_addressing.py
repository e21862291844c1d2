"""The official CLI (commune-cli 0.2.2) and MCP tools manage domains and inboxes on our server."""

from __future__ import annotations

import json
import uuid

from tests.official_clients import mcp_tools, run_cli


def test_cli_domains_and_inboxes(running, tmp_path) -> None:
    key = running.new_key()
    name = f"cli-{uuid.uuid4().hex[:8]}.example"
    code, created = run_cli(running.url, key, tmp_path, "domains", "create", name)
    assert code == 0, created
    domain_id = created["data"]["id"]
    code, listed = run_cli(running.url, key, tmp_path, "domains", "list")
    assert code == 0 and [d["name"] for d in listed["data"]] == [name]
    code, records = run_cli(running.url, key, tmp_path, "domains", "records", domain_id)
    assert code == 0 and "DKIM" in json.dumps(records)

    code, inbox = run_cli(running.url, key, tmp_path, "inboxes", "create", "--local-part", "desk",
                          "--domain-id", domain_id)
    assert code == 0, inbox
    inbox_id = inbox["data"]["id"]
    code, got = run_cli(running.url, key, tmp_path, "inboxes", "get", inbox_id)
    assert code == 0 and got["data"]["address"] == f"desk@{name}"
    code, listed = run_cli(running.url, key, tmp_path, "inboxes", "list", "--domain-id", domain_id)
    assert code == 0 and [i["id"] for i in listed["data"]] == [inbox_id]
    code, missing = run_cli(running.url, key, tmp_path, "domains", "get", str(uuid.uuid4()))
    assert code == 3  # the CLI's exit code for 404


def test_mcp_tools_list_and_create_inboxes(running, monkeypatch) -> None:
    server = mcp_tools(monkeypatch, running.url, running.new_key())
    local = f"mcp-{uuid.uuid4().hex[:6]}"
    created = json.loads(server.create_inbox(local_part=local, display_name="MCP agent"))
    assert created["address"] == f"{local}@commune.localhost"
    assert created["displayName"] == "MCP agent"
    inboxes = json.loads(server.list_inboxes())
    assert [i["id"] for i in inboxes] == [created["id"]]
    domains = json.loads(server.list_domains())
    assert [d["name"] for d in domains] == ["commune.localhost"]
