"""API keys: authentication, scopes, revocation, rate limits, and the `keys` command line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx

from backend.auth import hash_key
from tests.conftest import start_server


def test_missing_malformed_and_unknown_keys_are_401(running) -> None:
    with httpx.Client(base_url=running.url) as client:
        assert client.get("/v1/domains").status_code == 401
        assert client.get("/v1/domains", headers={"Authorization": "Basic abc"}).status_code == 401
        refused = client.get("/v1/domains", headers={"Authorization": "Bearer comm_nope"})
    assert refused.status_code == 401
    assert refused.json() == {"error": "Invalid or expired API key"}


def test_scopes_are_enforced_and_read_expands_to_resource_scopes(running) -> None:
    with running.client(running.new_key(["domains:read"])) as narrow:
        assert narrow.get("/v1/domains").status_code == 200
        denied = narrow.get("/v1/inboxes")
        assert denied.status_code == 403
        assert "inboxes:read" in denied.json()["error"]
        assert narrow.post("/v1/domains", json={"name": "scoped.example"}).status_code == 403
    with running.client(running.new_key(["read"])) as reader:
        assert reader.get("/v1/inboxes").status_code == 200
        assert reader.post("/v1/inboxes", json={"local_part": "nope"}).status_code == 403


def test_revoked_key_stops_working(running) -> None:
    key = running.new_key()
    services = running.server.services
    with running.client(key) as client:
        assert client.get("/v1/domains").status_code == 200

        def revoke() -> None:
            record = services.orgs.key_by_hash(hash_key(key))
            services.orgs.revoke_key(record.org_id, record.id)
            services.keys.forget()

        running.run(revoke)
        assert client.get("/v1/domains").status_code == 401


def test_rate_limit_answers_429_with_retry_after(tmp_path, dns_server, engine) -> None:
    server = start_server(tmp_path, dns_server, rate_limit=2, engine=engine)
    try:
        with server.client() as client:
            statuses, last = [], None
            for _ in range(8):
                last = client.get("/v1/domains")
                statuses.append(last.status_code)
            assert statuses[:4] == [200, 200, 200, 200]  # burst = 2 x rate
            assert 429 in statuses
            assert last is not None and last.status_code == 429
            limited = last
            assert limited.json() == {"error": "Rate limit exceeded"}
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.headers["ratelimit-remaining"] == "0"
            # another key has its own bucket
            with server.client(server.new_key()) as other:
                assert other.get("/v1/domains").status_code == 200
    finally:
        server.stop()


def test_keys_are_stored_hashed_and_admin_key_file_is_private(running) -> None:
    data_dir = running.server.settings.data_dir
    key_file = data_dir / "admin.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert key_file.read_text().strip() == running.admin_key
    stored = [row[0] for row in running.run(lambda: running.server.services.database.query(
        "SELECT key_hash FROM api_keys"))]
    assert running.admin_key not in stored
    assert all(len(h) == 64 for h in stored)


def cli_target(running) -> list[str]:
    """The command line's flags naming the running server's data: its data dir, and its database."""
    settings = running.server.settings
    return ["--data-dir", str(settings.data_dir), *(["--database", settings.database_url] if settings.database_url
                                                     else [])]


def commune_server(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `commune-server` command line in a child process."""
    return subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_keys_create_command_prints_a_working_key_on_its_last_line(running) -> None:
    target = cli_target(running)
    result = commune_server("keys", "create", *target, "--org", "cli-org",
                            "--scopes", "inboxes:read", "--name", "ci")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("comm_")
    with running.client(key) as client:
        assert client.get("/v1/inboxes").json() == {"data": []}
        assert client.get("/v1/domains").status_code == 403
    listing = commune_server("keys", "list", *target, "--org", "cli-org")
    assert "cli-org" in listing.stdout and key not in listing.stdout
    bad = commune_server("keys", "create", *target, "--scopes", "root")
    assert bad.returncode == 2 and "Unknown scope" in bad.stderr


def cli_key(target: list[str], org: str, scopes: str) -> tuple[str, str]:
    """A key made by `keys create`: its id (from the summary line) and the key itself (the last line)."""
    result = commune_server("keys", "create", *target, "--org", org, "--scopes", scopes)
    assert result.returncode == 0, result.stderr
    summary, key = result.stdout.strip().splitlines()[-2:]
    return summary.split()[2], key


def active_admin_ids(client: httpx.Client) -> list[str]:
    keys = client.get("/v1/agent/api-keys").json()["data"]
    return [k["id"] for k in keys if k["status"] == "active" and "admin" in k["scopes"]]


def test_the_api_refuses_to_revoke_an_organisations_last_admin_key(running) -> None:
    with running.client(running.new_key(["admin"], org="last-admin-api")) as first:
        [first_id] = active_admin_ids(first)
        refused = first.delete(f"/v1/agent/api-keys/{first_id}")
        assert refused.status_code == 409
        assert "last active admin key" in refused.json()["error"]
        assert active_admin_ids(first) == [first_id]
        reader = first.post("/v1/agent/api-keys", json={"scopes": ["read"]}).json()["data"]
        assert first.delete(f"/v1/agent/api-keys/{reader['id']}").status_code == 200
        second = first.post("/v1/agent/api-keys", json={"scopes": ["admin"]}).json()["data"]
        assert first.delete(f"/v1/agent/api-keys/{first_id}").status_code == 200
    with running.client(second["key"]) as admin:
        assert admin.delete(f"/v1/agent/api-keys/{second['id']}").status_code == 409
        assert active_admin_ids(admin) == [second["id"]]


def test_the_command_line_refuses_to_revoke_an_organisations_last_admin_key(running) -> None:
    target = cli_target(running)
    key_id, key = cli_key(target, "last-admin-cli", "admin")
    refused = commune_server("keys", "revoke", key_id, *target, "--org", "last-admin-cli")
    assert refused.returncode != 0
    assert "last active admin key" in refused.stderr and "Traceback" not in refused.stderr
    with running.client(key) as admin:
        assert active_admin_ids(admin) == [key_id]


def test_two_revocations_at_once_leave_the_last_admin_key(running) -> None:
    target = cli_target(running)
    keys = [cli_key(target, "last-admin-race", "admin,read") for _ in range(2)]
    revocations = [
        subprocess.Popen([sys.executable, "-m", "backend", "keys", "revoke", key_id, *target,
                          "--org", "last-admin-race"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for key_id, _ in keys
    ]
    for process in revocations:
        process.communicate(timeout=60)
    codes = [process.returncode for process in revocations]
    assert sorted(code == 0 for code in codes) == [False, True]
    survivor_id, survivor = next(key for key, code in zip(keys, codes, strict=True) if code != 0)
    with running.client(survivor) as admin:
        assert active_admin_ids(admin) == [survivor_id]
