"""Two-phase deletion end to end: exact previews, every scope, blobs, token safety, crashes, audit, retention."""

from __future__ import annotations

import base64
import hashlib
import itertools
from datetime import timedelta

import httpx
import pytest

from backend.api.deletion import TOKEN_PURPOSE
from backend.retention import apply_retention
from backend.util import iso, parse_iso, utcnow
from tests.conftest import start_server
from tests.mailtools import ingest, make_inbox
from tests.waiting import wait_until

_orgs = itertools.count()
OLD = iso(utcnow() - timedelta(days=40))
OLDER = iso(utcnow() - timedelta(days=50))

# Tables and the column naming their organisation, with the preview key each one reports under.
TABLES = {
    "messages": ("messages", "org_id"), "attachments": ("attachments", "org_id"),
    "thread_metadata": ("threads", "org_id"), "inboxes": ("inboxes", "org_id"),
    "domains": ("domains", "org_id"), "webhook_deliveries": ("webhook_deliveries", "org_id"),
    "delivery_events": ("delivery_events", "org_id"), "suppressions": ("suppressions", "org_id"),
    "audit_logs": ("audit_logs", "org_id"), "api_keys": ("api_keys", "org_id"),
    "outbound_queue": ("outbound_queue", "org_id"), "idempotency_keys": ("idempotency_keys", "org_id"),
    "organizations": ("orgs", "id"),
}


class Org:
    """An organisation with a read/write/data:delete client and an admin client."""

    def __init__(self, running) -> None:
        self.name = f"deletion-org-{next(_orgs)}"
        self.running = running
        self.key = running.new_key(["read", "write", "data:delete"], org=self.name)
        self.api = running.client(self.key)
        self.admin = running.client(running.new_key(["admin"], org=self.name))
        services = running.server.services
        self.id = running.run(lambda: services.orgs.get_or_create_org(self.name)["id"])

    def close(self) -> None:
        self.api.close()
        self.admin.close()


@pytest.fixture
def org(running):
    made = Org(running)
    yield made
    made.close()


@pytest.fixture
def other(running):
    made = Org(running)
    yield made
    made.close()


def sql(running, query: str, params: tuple = ()) -> list:
    services = running.server.services
    return running.run(lambda: [tuple(r) for r in services.database.query(query, params)])


def counts(running, org_id: str) -> dict[str, int]:
    """Rows per collection the organisation owns, read straight from the database."""
    return {name: sql(running, f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (org_id,))[0][0]
            for name, (table, column) in TABLES.items()}


def blob_exists(running, org_id: str, content: bytes) -> bool:
    return running.server.services.blobs.exists(org_id, hashlib.sha256(content).hexdigest())


def backdate(running, message_id: str, when: str) -> None:
    services = running.server.services

    def work() -> None:
        with services.database.transaction() as conn:
            conn.execute("UPDATE messages SET created_at = ? WHERE id = ?", (when, message_id))

    running.run(work)


def mail(running, inbox: dict, subject: str, files: list[bytes] = (), raw: bytes | None = None,
         **fields: object) -> dict:
    attachments = [(f"file{i}.bin", "application/octet-stream", c) for i, c in enumerate(files)]
    message, new = ingest(running, inbox["id"], subject=subject, text=f"body of {subject}",
                          attachments=attachments, raw=raw, **fields)
    assert new
    return message


def request(client: httpx.Client, **body: object) -> dict:
    response = client.post("/v1/data/deletion-request", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def confirm(client: httpx.Client, created: dict, token: str | None = None) -> httpx.Response:
    return client.post(f"/v1/data/deletion-request/{created['id']}/confirm",
                       json={"confirmation_token": token if token is not None else created["confirmation_token"]})


def assert_exact(before: dict, after: dict, result: dict) -> None:
    """What the preview promised is what the confirmation reports and what left the database.

    `before` is read before the request; the request and its confirmation each add an audit entry.
    """
    removed = {name: before[name] - after[name] for name in TABLES}
    removed["audit_logs"] += 2
    for name in TABLES:
        assert result["preview"][name] == result["deleted_counts"][name] == removed[name], name


def test_messages_scope_with_before_deletes_exactly_the_preview(running, org) -> None:
    inbox = make_inbox(org.api)
    keep_bytes, old_bytes, shared_bytes = b"kept file " * 50, b"old file " * 50, b"shared file " * 40
    old_alone = mail(running, inbox, "old alone", [old_bytes], raw=b"raw old alone " * 20)
    old_in_thread = mail(running, inbox, "old start", [shared_bytes], smtp_message_id="<start@x>")
    newer = mail(running, inbox, "Re: old start", [keep_bytes, shared_bytes], in_reply_to="<start@x>")
    untouched = mail(running, inbox, "new alone")
    backdate(running, old_alone["message_id"], OLDER)
    backdate(running, old_in_thread["message_id"], OLD)

    before = counts(running, org.id)
    created = request(org.api, scope="messages", before=iso(utcnow() - timedelta(days=30)))
    assert created["status"] == "pending" and created["scope"] == "messages"
    assert created["preview"]["messages"] == 2
    assert created["preview"]["attachments"] == 2
    assert created["preview"]["thread_metadata"] == 1
    assert created["preview"]["blocked_spam"] == 0 and created["preview"]["users"] == 0
    assert parse_iso(created["confirm_by"]) - utcnow() > timedelta(minutes=59)
    assert "cannot be undone" in created["warning"]

    done = confirm(org.api, created)
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["status"] == "completed" and result["confirmed_at"] and result["completed_at"]
    assert_exact(before, counts(running, org.id), result)

    assert not blob_exists(running, org.id, old_bytes)
    assert not blob_exists(running, org.id, b"raw old alone " * 20)
    assert blob_exists(running, org.id, shared_bytes) and blob_exists(running, org.id, keep_bytes)
    thread = org.api.get(f"/v1/threads/{newer['thread_id']}/messages").json()["data"]
    assert [m["message_id"] for m in thread] == [newer["message_id"]]
    listed = org.api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"]
    summary = {t["thread_id"]: t for t in listed}
    assert summary[newer["thread_id"]]["message_count"] == 1
    assert summary[newer["thread_id"]]["first_message_at"] == newer["created_at"]
    assert set(summary) == {newer["thread_id"], untouched["thread_id"]}
    assert org.api.get(f"/v1/data/deletion-request/{created['id']}").json()["status"] == "completed"


def test_messages_arriving_after_the_preview_are_kept(running, org) -> None:
    inbox = make_inbox(org.api)
    mail(running, inbox, "before the request")
    created = request(org.api, scope="messages")
    late = mail(running, inbox, "after the request")
    result = confirm(org.api, created).json()
    assert result["deleted_counts"]["messages"] == result["preview"]["messages"] == 1
    remaining = org.api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert [m["message_id"] for m in remaining] == [late["message_id"]]


def test_messages_scope_can_be_limited_to_one_inbox(running, org) -> None:
    emptied, kept = make_inbox(org.api), make_inbox(org.api)
    mail(running, emptied, "goes")
    stays = mail(running, kept, "stays")
    before = counts(running, org.id)
    result = confirm(org.api, request(org.api, scope="messages", inbox_id=emptied["id"])).json()
    assert_exact(before, counts(running, org.id), result)
    assert result["deleted_counts"]["messages"] == 1 and result["deleted_counts"]["inboxes"] == 0
    assert org.api.get("/v1/messages", params={"inbox_id": emptied["id"]}).json()["data"] == []
    assert org.api.get("/v1/messages", params={"inbox_id": kept["id"]}).json()["data"][0]["message_id"] == \
        stays["message_id"]


def test_an_upload_stays_while_a_remaining_message_lists_it(running, org) -> None:
    sender, recipient = make_inbox(org.api), make_inbox(org.api)
    content = b"uploaded and sent twice " * 20
    upload = org.api.post("/v1/attachments/upload", json={
        "content": base64.b64encode(content).decode(), "filename": "twice.txt", "mime_type": "text/plain"})
    upload_id = upload.json()["data"]["attachment_id"]
    for subject in ("first", "second"):
        sent = org.api.post("/v1/messages/send", json={
            "to": recipient["address"], "subject": subject, "text": "see file", "inboxId": sender["id"],
            "attachments": [upload_id]})
        assert sent.status_code == 200, sent.text
    first = [m for m in org.api.get("/v1/messages", params={"inbox_id": sender["id"]}).json()["data"]
             if m["metadata"]["subject"] == "first"][0]
    backdate(running, first["message_id"], OLD)

    partial = request(org.api, scope="messages", inbox_id=sender["id"], before=iso(utcnow() - timedelta(days=1)))
    assert partial["preview"]["messages"] == 1 and partial["preview"]["attachments"] == 0
    confirm(org.api, partial)
    assert org.api.get(f"/v1/attachments/{upload_id}").status_code == 200
    rest = request(org.api, scope="messages", inbox_id=sender["id"])
    assert rest["preview"]["messages"] == 1 and rest["preview"]["attachments"] == 1
    confirm(org.api, rest)
    assert org.api.get(f"/v1/attachments/{upload_id}").status_code == 404
    assert blob_exists(running, org.id, content)  # the recipient's copy still holds the same bytes


def test_inbox_scope_removes_the_inbox_and_everything_in_it(running, org) -> None:
    doomed = make_inbox(org.api, webhook={"endpoint": "http://127.0.0.1:9/hook"})
    kept = make_inbox(org.api)
    doomed_bytes, kept_bytes = b"doomed attachment " * 30, b"kept attachment " * 30
    mail(running, doomed, "one", [doomed_bytes], raw=b"raw doomed " * 30)
    mail(running, doomed, "two")
    kept_message = mail(running, kept, "stays", [kept_bytes])
    for inbox, email in ((doomed, "gone@example.net"), (kept, "stays@example.net")):
        added = org.api.post("/v1/delivery/suppressions", json={"email": email, "inbox_id": inbox["id"]})
        assert added.status_code in (200, 201), added.text

    before = counts(running, org.id)
    created = request(org.api, inboxId=doomed["id"])  # the CLI's body: no scope, camelCase id
    assert created["scope"] == "inbox" and created["inbox_id"] == doomed["id"]
    assert created["preview"]["messages"] == 2 and created["preview"]["inboxes"] == 1
    assert created["preview"]["suppressions"] == 1 and created["preview"]["webhook_deliveries"] == 2
    result = confirm(org.api, created).json()
    assert_exact(before, counts(running, org.id), result)

    assert org.api.get(f"/v1/inboxes/{doomed['id']}").status_code == 404
    assert org.api.get(f"/v1/inboxes/{kept['id']}").status_code == 200
    assert not blob_exists(running, org.id, doomed_bytes) and not blob_exists(running, org.id, b"raw doomed " * 30)
    assert blob_exists(running, org.id, kept_bytes)
    assert org.api.get("/v1/messages", params={"inbox_id": kept["id"]}).json()["data"][0]["message_id"] == \
        kept_message["message_id"]
    suppressed = org.api.get("/v1/delivery/suppressions").json()["data"]
    assert [s["email"] for s in suppressed] == ["stays@example.net"]


def test_organization_scope_removes_everything_and_nothing_else(running, org, other) -> None:
    domain = org.api.post("/v1/domains", json={"name": f"{org.name}.example"})
    assert domain.status_code in (200, 201), domain.text
    inbox = make_inbox(org.api)
    shared_bytes, own_bytes = b"same bytes in both organisations " * 20, b"only in the doomed org " * 20
    mail(running, inbox, "hello", [shared_bytes, own_bytes])
    upload = org.api.post("/v1/attachments/upload", json={
        "content": base64.b64encode(b"uploaded, never sent " * 10).decode(), "filename": "u.txt",
        "mime_type": "text/plain"})
    assert upload.status_code == 201, upload.text
    other_inbox = make_inbox(other.api)
    mail(running, other_inbox, "other org", [shared_bytes])
    other_before = counts(running, other.id)
    shared_domain_id = inbox["domain_id"]

    before = counts(running, org.id)
    created = request(org.api, scope="organization")
    assert created["preview"]["domains"] == 1 and created["preview"]["api_keys"] == 2
    assert created["preview"]["organizations"] == 1 and created["preview"]["attachments"] == 3
    result = confirm(org.api, created).json()
    after = counts(running, org.id)
    assert_exact(before, after, result)
    assert all(value == 0 for value in after.values())

    assert org.api.get("/v1/inboxes").status_code == 401
    assert counts(running, other.id) == other_before
    assert blob_exists(running, other.id, shared_bytes) and not blob_exists(running, org.id, shared_bytes)
    assert not blob_exists(running, org.id, own_bytes)
    assert not blob_exists(running, org.id, b"uploaded, never sent " * 10)
    assert sql(running, "SELECT COUNT(*) FROM domains WHERE id = ?", (shared_domain_id,))[0][0] == 1
    assert other.api.get(f"/v1/inboxes/{other_inbox['id']}").status_code == 200


def test_deletion_is_logged_before_the_audit_log_is_purged(running, org) -> None:
    inbox = make_inbox(org.api)
    created = request(org.api, inboxId=inbox["id"])
    assert confirm(org.api, created).status_code == 200
    actions = [e["action"] for e in org.admin.get("/v1/audit-logs").json()["data"]]
    assert actions[:2] == ["deletion.confirmed", "deletion.requested"]

    created = request(org.api, scope="organization")
    listed = org.admin.get("/v1/audit-logs", params={"limit": 200}).json()["data"]
    # Everything listed now, plus the confirmation entry written just before the purge.
    assert created["preview"]["audit_logs"] == len(listed) + 1
    result = confirm(org.api, created).json()
    assert result["deleted_counts"]["audit_logs"] == created["preview"]["audit_logs"]


def test_token_cannot_be_guessed_moved_reused_or_used_late(running, org, other) -> None:
    inbox = make_inbox(org.api)
    mail(running, inbox, "precious")
    created = request(org.api, scope="messages")
    theirs = request(other.api, scope="messages")

    second = org.api.post("/v1/data/deletion-request", json={"scope": "organization"})
    assert second.status_code == 409 and "pending" in second.json()["error"]
    missing = org.api.post(f"/v1/data/deletion-request/{created['id']}/confirm", json={})
    assert missing.status_code == 400 and "confirmation_token" in missing.json()["error"]
    assert confirm(org.api, created, "A" * 43).status_code == 403
    assert confirm(org.api, created, created["confirmation_token"][:-2]).status_code == 403
    # Another request's valid token, and another organisation's request, get nowhere.
    assert confirm(org.api, created, theirs["confirmation_token"]).status_code == 403
    assert confirm(other.api, created).status_code == 404
    assert other.api.get(f"/v1/data/deletion-request/{created['id']}").status_code == 404
    assert org.api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]

    assert confirm(org.api, created).status_code == 200
    again = confirm(org.api, created)
    assert again.status_code == 409 and "already completed" in again.json()["error"]


def test_expired_request_cannot_be_confirmed_and_frees_the_slot(running, org) -> None:
    inbox = make_inbox(org.api)
    mail(running, inbox, "still here")
    created = request(org.api, scope="messages")
    past = utcnow() - timedelta(minutes=1)
    services = running.server.services

    def expire() -> str:
        with services.database.transaction() as conn:
            conn.execute("UPDATE deletion_requests SET confirm_by = ? WHERE id = ?", (iso(past), created["id"]))
        return services.signer.sign(TOKEN_PURPOSE, f"{org.id}/{created['id']}", int(past.timestamp()))

    late_token = running.run(expire)
    # Both the original token (signed for the old expiry) and one signed for the past expiry fail.
    assert confirm(org.api, created).status_code == 403
    late = confirm(org.api, created, late_token)
    assert late.status_code == 410 and "expired" in late.json()["error"]
    assert org.api.get(f"/v1/data/deletion-request/{created['id']}").json()["status"] == "expired"
    assert len(org.api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]) == 1
    assert request(org.api, scope="messages")["status"] == "pending"


@pytest.mark.parametrize(("body", "status", "names"), [
    ({}, 400, "scope"),
    ({"scope": "everything"}, 400, "scope"),
    ({"scope": "inbox"}, 400, "inbox_id"),
    ({"scope": "organization", "inbox_id": "x"}, 400, "inbox_id"),
    ({"scope": "messages", "before": "last tuesday"}, 400, "before"),
    ({"scope": "inbox", "before": "2025-01-01T00:00:00Z", "inbox_id": "x"}, 404, "Inbox"),
    ({"scope": "organization", "before": "2025-01-01T00:00:00Z"}, 400, "before"),
    ({"scope": ["messages"]}, 400, "scope"),
    ({"scope": "inbox", "inbox_id": "00000000-0000-0000-0000-000000000000"}, 404, "Inbox"),
])
def test_bad_requests_name_the_field(org, body: dict, status: int, names: str) -> None:
    response = org.api.post("/v1/data/deletion-request", json=body)
    assert response.status_code == status, response.text
    assert names in response.json()["error"]


def test_other_organisations_inbox_is_not_found(org, other) -> None:
    theirs = make_inbox(other.api)
    for body in ({"scope": "inbox", "inbox_id": theirs["id"]}, {"scope": "messages", "inboxId": theirs["id"]}):
        assert org.api.post("/v1/data/deletion-request", json=body).status_code == 404
    assert other.api.get(f"/v1/inboxes/{theirs['id']}").status_code == 200


def test_permission_is_admin_or_data_delete(running, org) -> None:
    with running.client(running.new_key(["read", "write"], org=org.name)) as plain:
        refused = plain.post("/v1/data/deletion-request", json={"scope": "messages"})
        assert refused.status_code == 403 and "data:delete" in refused.json()["error"]
    assert org.admin.post("/v1/data/deletion-request", json={"scope": "messages"}).status_code == 201
    with running.client() as server_admin:
        kept = server_admin.post("/v1/data/deletion-request", json={"scope": "organization"})
        assert kept.status_code == 409 and "default organization" in kept.json()["error"]


def test_crash_midway_through_the_purge_deletes_nothing(running, org) -> None:
    inbox = make_inbox(org.api)
    content = b"survives the crash " * 20
    mail(running, inbox, "one", [content])
    mail(running, inbox, "two")
    created = request(org.api, inboxId=inbox["id"])
    before = counts(running, org.id)
    services = running.server.services

    def arm(on: bool) -> None:
        # Attachments and threads are already deleted when the messages step blows up.
        if services.database.engine == "postgresql":
            statements = [
                ("CREATE FUNCTION crash_midway() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                 f" IF OLD.org_id = '{org.id}' THEN RAISE EXCEPTION 'injected crash'; END IF; RETURN OLD; END $$"),
                "CREATE TRIGGER crash_midway BEFORE DELETE ON messages FOR EACH ROW EXECUTE FUNCTION crash_midway()",
            ] if on else ["DROP TRIGGER crash_midway ON messages", "DROP FUNCTION crash_midway()"]
        elif on:
            statements = [(f"CREATE TEMP TRIGGER crash_midway BEFORE DELETE ON messages WHEN old.org_id = '{org.id}'"
                           " BEGIN SELECT RAISE(ABORT, 'injected crash'); END")]
        else:
            statements = ["DROP TRIGGER crash_midway"]
        for statement in statements:
            services.database.execute(statement)

    running.run(lambda: arm(True))
    try:
        crashed = confirm(org.api, created)
    finally:
        running.run(lambda: arm(False))
    assert crashed.status_code == 500
    assert counts(running, org.id) == before
    assert blob_exists(running, org.id, content)
    assert org.api.get(f"/v1/data/deletion-request/{created['id']}").json()["status"] == "pending"

    done = confirm(org.api, created)
    assert done.status_code == 200
    assert done.json()["deleted_counts"]["messages"] == 2
    assert not blob_exists(running, org.id, content)


def test_audit_log_pages_filters_and_stays_in_the_organisation(running, org, other) -> None:
    for _ in range(3):
        make_inbox(org.api)
    make_inbox(other.api)
    first = org.admin.get("/v1/audit-logs", params={"limit": 2})
    assert first.status_code == 200
    page1 = first.json()
    assert len(page1["data"]) == 2 and page1["has_more"] is True
    page2 = org.admin.get("/v1/audit-logs", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    entries = page1["data"] + page2["data"]
    assert page2["has_more"] is False and len(entries) == 3
    assert {e["action"] for e in entries} == {"inbox.created"}
    assert all(e["key_id"] and e["target_type"] == "inbox" and e["created_at"] for e in entries)
    assert len({e["id"] for e in entries}) == 3

    assert org.admin.get("/v1/audit-logs", params={"action": "key.created"}).json()["data"] == []
    assert org.api.get("/v1/audit-logs").status_code == 403
    bad = org.admin.get("/v1/audit-logs", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]
    other_cursor = org.admin.get("/v1/audit-logs", params={"limit": 1, "action": "inbox.created"})
    mismatch = org.admin.get("/v1/audit-logs", params={"cursor": other_cursor.json()["next_cursor"]})
    assert mismatch.status_code == 400
    assert len(other.admin.get("/v1/audit-logs").json()["data"]) == 1


def test_security_relevant_actions_are_audited_with_key_and_target(running, org) -> None:
    admin = org.admin
    domain = admin.post("/v1/domains", json={"name": f"{org.name}.example"}).json()["data"]
    admin.post(f"/v1/domains/{domain['id']}/verify")
    inbox = make_inbox(admin)
    admin.patch(f"/v1/inboxes/{inbox['id']}", json={"name": "Desk"})
    admin.patch(f"/v1/inboxes/{inbox['id']}", json={"webhook": {"endpoint": "http://127.0.0.1:9/h"}})
    admin.delete(f"/v1/domains/{inbox['domain_id']}/inboxes/{inbox['id']}")
    key = admin.post("/v1/agent/api-keys", json={"name": "temp", "scopes": ["read"]}).json()["data"]
    admin.delete(f"/v1/agent/api-keys/{key['id']}")
    admin.post("/v1/delivery/suppressions", json={"email": "x@example.net"})
    admin.delete("/v1/delivery/suppressions/x@example.net")
    created = request(admin, scope="messages")
    confirm(admin, created)

    entries = admin.get("/v1/audit-logs", params={"limit": 200}).json()["data"]
    targets = {e["action"]: e["target_id"] for e in entries}
    assert targets == {
        "domain.created": domain["id"], "domain.verified": domain["id"], "inbox.created": inbox["id"],
        "inbox.updated": inbox["id"], "webhook.changed": inbox["id"], "inbox.deleted": inbox["id"],
        "key.created": key["id"], "key.revoked": key["id"], "suppression.added": "x@example.net",
        "suppression.removed": "x@example.net", "deletion.requested": created["id"],
        "deletion.confirmed": created["id"],
    }
    admin_key_id = entries[0]["key_id"]
    assert admin_key_id and all(e["key_id"] == admin_key_id and e["created_at"] for e in entries)


def test_retention_deletes_old_messages_with_the_deletion_code(running, org, monkeypatch) -> None:
    monkeypatch.setattr("backend.retention.BATCH", 2)
    kept_inbox, short_inbox = make_inbox(org.api), make_inbox(org.api)
    patched = org.api.patch(f"/v1/inboxes/{short_inbox['id']}", json={"retention_days": 30})
    assert patched.status_code == 200, patched.text
    old_bytes = b"expired attachment " * 20
    old = mail(running, short_inbox, "old", [old_bytes])
    recent = mail(running, short_inbox, "recent")
    untouched = mail(running, kept_inbox, "no retention here")
    expired = (old, untouched, mail(running, short_inbox, "old 2"), mail(running, short_inbox, "old 3"))
    for minutes, message in enumerate(expired):  # distinct times, so the sweep needs two batches
        backdate(running, message["message_id"], iso(parse_iso(OLD) - timedelta(minutes=minutes)))

    running.run(lambda: apply_retention(running.server.services))
    remaining = org.api.get("/v1/messages", params={"inbox_id": short_inbox["id"]}).json()["data"]
    assert [m["message_id"] for m in remaining] == [recent["message_id"]]
    assert org.api.get(f"/v1/threads/{old['thread_id']}").status_code == 404
    assert not blob_exists(running, org.id, old_bytes)
    assert len(org.api.get("/v1/messages", params={"inbox_id": kept_inbox["id"]}).json()["data"]) == 1
    logged = org.admin.get("/v1/audit-logs", params={"action": "retention.applied"}).json()["data"]
    assert logged[0]["target_id"] == short_inbox["id"] and logged[0]["detail"]["deleted_counts"]["messages"] == 3


def test_retention_worker_runs_on_its_interval(tmp_path, dns_server, engine) -> None:
    server = start_server(tmp_path, dns_server, retention_interval=0.2, engine=engine)
    try:
        with server.client(server.new_key()) as api:
            inbox = make_inbox(api)
            old = mail(server, inbox, "old")
            backdate(server, old["message_id"], OLD)
            assert api.patch(f"/v1/inboxes/{inbox['id']}", json={"retention_days": 7}).status_code == 200
            remaining = wait_until(
                lambda: api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"],
                lambda messages: not messages)
            assert remaining == []
    finally:
        server.stop()
