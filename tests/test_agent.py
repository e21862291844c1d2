"""Organisation and API keys as the official CLI reads them: `config status`, `config keys`, `doctor`."""

from __future__ import annotations

import httpx

from tests.official_clients import run_cli


def test_org_fields_sit_at_the_top_level_for_the_cli(running, tmp_path) -> None:
    key = running.new_key(org="agent-org-top")
    with running.client(key) as client:
        body = client.get("/v1/agent/org").json()
    assert body["name"] == "agent-org-top"
    assert body["tier"] and body["status"] == "active" and body["id"]
    code, status = run_cli(running.url, key, tmp_path, "config", "status")
    assert code == 0
    assert status["org_name"] == "agent-org-top"
    assert status["org_id"] == body["id"]
    assert status["status"] == "active"


def test_admin_creates_lists_and_revokes_keys_and_the_revoked_key_stops_working(running, tmp_path) -> None:
    admin_key = running.new_key(["admin"], org="agent-org-keys")
    with running.client(admin_key) as admin:
        created = admin.post("/v1/agent/api-keys", json={"name": "ci bot", "scopes": ["inboxes:read"]})
        assert created.status_code == 201
        new = created.json()["data"]
        assert new["key"].startswith("comm_") and new["key"].startswith(new["keyPrefix"])

        with running.client(new["key"]) as bot:
            assert bot.get("/v1/inboxes").status_code == 200
            assert bot.get("/v1/domains").status_code == 403

        code, listed = run_cli(running.url, admin_key, tmp_path, "config", "keys", "list")
        assert code == 0
        rows = {row["id"]: row for row in listed["data"]}
        assert rows[new["id"]]["name"] == "ci bot"
        assert rows[new["id"]]["status"] == "active"
        assert all("key" not in row and "key_hash" not in row for row in rows.values())

        code, revoked = run_cli(running.url, admin_key, tmp_path, "config", "keys", "revoke", new["id"], "--yes")
        assert code == 0 and revoked["data"]["status"] == "revoked"

        with running.client(new["key"]) as bot:
            assert bot.get("/v1/inboxes").status_code == 401
        assert {row["id"]: row for row in admin.get("/v1/agent/api-keys").json()["data"]}[new["id"]][
            "status"] == "revoked"
        audit = running.run(lambda: [dict(r) for r in running.server.services.database.query(
            "SELECT action, target_id FROM audit_logs WHERE action = 'key.revoked' AND target_id = ?",
            (new["id"],))])
        assert len(audit) == 1


def test_key_management_needs_admin_and_stays_inside_the_org(running) -> None:
    plain = running.new_key(["read", "write"], org="agent-org-plain")
    other_admin = running.new_key(["admin"], org="agent-org-other")
    with running.client(plain) as client:
        assert client.get("/v1/agent/api-keys").status_code == 403
        assert client.post("/v1/agent/api-keys", json={}).status_code == 403
    with running.client(running.new_key(["admin"], org="agent-org-plain")) as admin:
        own_id = next(k["id"] for k in admin.get("/v1/agent/api-keys").json()["data"])
        bad = admin.post("/v1/agent/api-keys", json={"scopes": ["root"]})
        assert bad.status_code == 400 and "scopes" in bad.json()["error"]
        assert admin.post("/v1/agent/api-keys", json={"scopes": "read"}).status_code == 400
    with running.client(other_admin) as stranger:
        assert stranger.delete(f"/v1/agent/api-keys/{own_id}").status_code == 404
        assert own_id not in [k["id"] for k in stranger.get("/v1/agent/api-keys").json()["data"]]


def test_doctor_passes_its_auth_check(running, tmp_path) -> None:
    code, report = run_cli(running.url, running.new_key(org="agent-org-doctor"), tmp_path, "doctor")
    checks = {c["name"]: c for c in report["checks"]} if isinstance(report, dict) else {}
    assert checks["auth"]["status"] == "pass", report
    assert checks["auth"]["details"]["org_name"] == "agent-org-doctor"


def test_unauthenticated_org_request_is_401(running) -> None:
    response = httpx.get(running.url + "/v1/agent/org")
    assert response.status_code == 401
