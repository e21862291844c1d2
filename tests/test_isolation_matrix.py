"""Tenant-isolation matrix over the live route table: organisation B's key on organisation A's ids.

Two organisations each get a domain, inboxes with webhooks, threads, messages with attachments, an
upload, a suppression, a deletion request, webhook deliveries and keys. Every route with path
parameters, called by B with A's ids, is a 404 (a public signed-URL route refuses without the
signature); every list route filtered by A's ids is a 404 or empty. No response carries A's marker,
and after the whole matrix A's data is exactly as it was.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from backend.api import all_routes
from backend.http.router import PARAM, Route
from tests.mailtools import ingest
from tests.waiting import wait_until

ROUTES = all_routes()
FILTERS = ("inbox_id", "domain_id", "thread_id", "message_id", "email")
# A body every mutating route can parse, so a refusal cannot come from validation instead of ownership.
BODY = {
    "local_part": "intruder", "name": "intruder", "status": "closed", "tags": ["intruder"],
    "assigned_to": "intruder@example.net", "assignedTo": "intruder@example.net",
    "endpoint": "http://127.0.0.1:9/intruder", "events": ["inbound"], "schema": {"type": "object"},
    "enabled": True, "confirmation_token": "intruder", "webhook": {"endpoint": "http://127.0.0.1:9/intruder"},
}
# Tables whose rows for organisation A must be untouched by everything B tries.
TABLES = ("domains", "inboxes", "threads", "messages", "attachments", "suppressions", "webhook_deliveries",
          "deletion_requests", "api_keys", "outbox")


def route_id(route: Route) -> str:
    return f"{route.method} {route.template}"


class Tenant:
    """One organisation populated through the API (mail arrives as SMTP ingest would deliver it)."""

    def __init__(self, running, label: str) -> None:
        self.marker = f"isolation{label}{uuid.uuid4().hex[:12]}"
        self.name = f"iso-{self.marker}"
        self.client = running.client(running.new_key(["admin", "read", "write", "data:delete"], org=self.name))
        services = running.server.services
        self.org_id = running.run(lambda: services.orgs.get_or_create_org(self.name)["id"])
        hook = {"endpoint": "http://127.0.0.1:9/hook", "events": ["inbound"]}
        domain = self.ok(self.client.post("/v1/domains", json={"name": f"{self.marker}.example"}))
        inbox = self.ok(self.client.post(f"/v1/domains/{domain['id']}/inboxes",
                                         json={"local_part": "desk", "webhook": hook}))
        shared = self.ok(self.client.post("/v1/inboxes", json={"local_part": self.marker, "webhook": hook}))
        self.secrets = [self.marker, inbox["webhook"]["secret"], shared["webhook"]["secret"]]
        first, _ = ingest(running, inbox["id"], subject=f"{self.marker} first", text=f"{self.marker} body",
                          smtp_message_id=f"<{self.marker}@x>",
                          attachments=[("secret.txt", "text/plain", f"{self.marker} file".encode())])
        ingest(running, shared["id"], subject=f"{self.marker} shared", text=self.marker)
        ingest(running, inbox["id"], subject=f"Re: {self.marker} first", text=self.marker,
               in_reply_to=f"<{self.marker}@x>")
        self.ok(self.client.post(f"/v1/threads/{first['thread_id']}/tags", json={"tags": [self.marker]}))
        self.ok(self.client.post("/v1/attachments/upload", json={
            "content": "c2VjcmV0", "filename": f"{self.marker}.txt", "mime_type": "text/plain"}))
        email = f"{self.marker}@example.net"
        self.ok(self.client.post("/v1/delivery/suppressions", json={"email": email, "inbox_id": inbox["id"]}))
        deletion = self.client.post("/v1/data/deletion-request",
                                    json={"scope": "messages", "before": "2000-01-01T00:00:00Z"})
        assert deletion.status_code == 201, deletion.text
        reports = self.ok(self.client.post(f"/v1/domains/{domain['id']}/inboxes", json={"local_part": "dmarc-reports"}))
        ingest(running, reports["id"], subject=f"Report domain: {self.marker}.example", text=self.marker)
        report = wait_until(lambda: self.client.get("/v1/dmarc/reports", params={"domain": domain["id"]}).json()["data"],
                            bool)[0]
        keys = self.ok(self.client.get("/v1/agent/api-keys"))
        draft = self.ok(self.client.post("/v1/drafts", json={"inbox_id": inbox["id"], "subject": self.marker}))
        deliveries = wait_until(
            lambda: self.client.get("/v1/webhooks/deliveries", params={"inbox_id": inbox["id"]}).json()["data"],
            bool)
        assert deliveries, "the inbox webhook should have queued deliveries"
        self.ids = {
            "domain_id": domain["id"], "inbox_id": inbox["id"], "thread_id": first["thread_id"],
            "message_id": first["message_id"], "attachment_id": first["attachments"][0], "email": email,
            "deletion_id": deletion.json()["id"], "key_id": keys[0]["id"], "delivery_id": deliveries[0]["id"],
            "report_id": report["id"], "draft_id": draft["id"],
        }

    @staticmethod
    def ok(response: httpx.Response):
        assert response.status_code in (200, 201), response.text
        return response.json().get("data", response.json())


def snapshot(running, org_id: str) -> dict:
    """Every row organisation A owns in the tables B might try to change (volatile columns left out)."""
    services = running.server.services
    volatile = {"last_used_at", "attempts", "next_attempt_at", "status", "updated_at", "http_status",
                "last_error", "latency_ms", "attempt_log", "delivered_at", "retry_base"}

    def read() -> dict:
        found = {}
        for table in TABLES:
            rows = services.database.query(f"SELECT * FROM {table} WHERE org_id = ? ORDER BY id", (org_id,))
            keep = (lambda k: k not in volatile) if table == "webhook_deliveries" else (lambda k: True)
            found[table] = [{k: row[k] for k in row.keys() if keep(k) and k != "last_used_at"} for row in rows]
        return found

    return running.run(read)


@pytest.fixture(scope="module")
def world(running):
    a, b = Tenant(running, "a"), Tenant(running, "b")
    before = snapshot(running, a.org_id)
    yield a, b, before
    a.client.close()
    b.client.close()


def assert_no_leak(text: str, owner: Tenant) -> None:
    for secret in owner.secrets:
        assert secret not in text, f"{owner.marker}'s data leaked: {text[:300]}"


def call(client: httpx.Client, route: Route, path: str, params: dict) -> tuple[int, str, str]:
    """Status, content type and body (empty for an event stream, which is closed after the headers)."""
    body = None if route.method == "GET" else BODY
    with client.stream(route.method, path, params={**params, "timeout": "0"}, json=body) as response:
        kind = response.headers.get("content-type", "")
        text = "" if "text/event-stream" in kind else response.read().decode("utf-8", "replace")
        return response.status_code, kind, text


def test_the_matrix_covers_the_live_route_table(running) -> None:
    assert {route_id(r) for r in running.server.app.routes} == {route_id(r) for r in ROUTES}


@pytest.mark.parametrize("route", [r for r in ROUTES if r.params], ids=route_id)
def test_other_organisations_ids_are_not_found(running, world, route: Route) -> None:
    a, b, _ = world
    missing = [p for p in route.params if p not in a.ids]
    if missing:
        pytest.skip(f"no organisation-owned value for {', '.join(missing)} yet; add one to Tenant.ids")
    path = PARAM.sub(lambda m: a.ids[m.group(1)], route.template)
    if route.method == "GET" and route.scope is not None:
        own, _, text = call(a.client, route, path, {})
        assert own == 200, f"control: A's own key must reach {path}: {text[:200]}"
    client = running.client("") if route.scope is None else b.client
    status, _, text = call(client, route, path, {})
    expected = (403, 404) if route.scope is None else (404,)
    assert status in expected, text[:300]
    assert_no_leak(text, a)


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.params and r.method == "GET"], ids=route_id)
@pytest.mark.parametrize("name", FILTERS)
def test_lists_filtered_by_other_organisations_ids_are_empty(world, route: Route, name: str) -> None:
    a, b, _ = world
    status, kind, text = call(b.client, route, route.template, {name: a.ids[name], "q": a.marker})
    assert_no_leak(text, a)
    if status in (400, 404):
        return
    assert status == 200, text[:300]
    if "text/event-stream" in kind:
        # A stream cannot be read to its end; it may ignore this filter, but then it ignores any value.
        bogus, _, _ = call(b.client, route, route.template, {name: "x-not-an-id"})
        assert bogus == 200, f"the stream refuses an unknown {name} but accepts A's"
        return
    # A route may ignore a filter it does not know and list B's own rows; none may be A's.
    listed = json.loads(text).get("data")
    for row in listed if isinstance(listed, list) else []:
        found = [key for key, value in a.ids.items() if value in json.dumps(row)]
        assert not found, f"B's list filtered by A's {name} returned A's row ({found}): {row}"


def test_owner_data_is_untouched_after_the_matrix(running, world) -> None:
    a, _, before = world
    after = snapshot(running, a.org_id)
    for table in TABLES:
        assert after[table] == before[table], f"{table} of organisation A changed: {json.dumps(after[table])[:300]}"
