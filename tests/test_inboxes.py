"""Inboxes: every route of the reference plus the CLI's, validation, uniqueness, webhooks."""

from __future__ import annotations

import uuid

from commune import CommuneClient


def _domain(api) -> dict:
    return api.post("/v1/domains", json={"name": f"in-{uuid.uuid4().hex[:10]}.example"}).json()["data"]


def test_simplified_create_uses_the_shared_domain(api) -> None:
    response = api.post("/v1/inboxes", json={"local_part": f"agent-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201
    inbox = response.json()["data"]
    assert set(inbox) >= {"id", "localPart", "address", "createdAt", "domain_id", "domain_name", "webhook",
                          "status"}
    assert inbox["domain_name"] == "commune.localhost"
    assert inbox["address"] == f"{inbox['localPart']}@commune.localhost"
    assert inbox["createdAt"].endswith("Z") and len(inbox["createdAt"]) == 24


def test_create_under_domain_get_update_delete(api) -> None:
    domain = _domain(api)
    base = f"/v1/domains/{domain['id']}/inboxes"
    created = api.post(base, json={"local_part": "support", "name": "Customer Support",
                                   "webhook": {"endpoint": "https://hooks.example/in",
                                               "events": ["email.received"]}})
    assert created.status_code == 201
    inbox = created.json()["data"]
    assert inbox["address"] == f"support@{domain['name']}"
    assert inbox["displayName"] == "Customer Support"
    assert inbox["webhook"]["secret"].startswith("whsec_")
    secret = inbox["webhook"]["secret"]

    assert api.get(f"{base}/{inbox['id']}").json()["data"]["id"] == inbox["id"]
    assert [i["id"] for i in api.get(base).json()["data"]] == [inbox["id"]]
    assert api.get(f"/v1/domains/{domain['id']}").json()["data"]["inboxes"] == [
        {"id": inbox["id"], "localPart": "support", "address": f"support@{domain['name']}"}]

    updated = api.put(f"{base}/{inbox['id']}", json={"local_part": "help", "status": "paused"})
    assert updated.status_code == 200
    body = updated.json()["data"]
    assert body["address"] == f"help@{domain['name']}" and body["status"] == "paused"
    assert body["displayName"] == "Customer Support"  # partial update keeps other fields
    assert body["webhook"]["secret"] == secret

    hook = api.post(f"{base}/{inbox['id']}/webhook", json={"endpoint": "https://hooks.example/v2",
                                                           "events": ["inbound"]})
    assert hook.json()["data"]["webhook"] == {"endpoint": "https://hooks.example/v2", "events": ["inbound"],
                                              "secret": secret}

    deleted = api.delete(f"{base}/{inbox['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"data": {"ok": True}}
    assert api.get(f"{base}/{inbox['id']}").status_code == 404


def test_cli_routes_and_aliases(api) -> None:
    domain = _domain(api)
    inbox = api.post("/v1/inboxes", json={"localPart": "Ops", "domainId": domain["id"],
                                          "display_name": "Ops team"}).json()["data"]
    assert inbox["localPart"] == "ops" and inbox["displayName"] == "Ops team"
    assert api.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["address"] == f"ops@{domain['name']}"
    patched = api.patch(f"/v1/inboxes/{inbox['id']}", json={"name": "Operations",
                                                           "webhook": {"endpoint": "http://127.0.0.1:9/h"}})
    body = patched.json()["data"]
    assert body["displayName"] == "Operations" and body["webhook"]["events"] == ["email.received"]
    filtered = api.get("/v1/inboxes", params={"domain_id": domain["id"]}).json()["data"]
    assert [i["id"] for i in filtered] == [inbox["id"]]


def test_local_part_is_validated_and_unique_across_organisations(running, api) -> None:
    domain = _domain(api)
    base = f"/v1/domains/{domain['id']}/inboxes"
    for bad in ["", "two words", "a..b", ".lead", "x" * 65, "bad@at", "new\nline"]:
        response = api.post(base, json={"local_part": bad})
        assert response.status_code == 400, bad
        assert "local_part" in response.json()["error"]
    missing = api.post("/v1/inboxes", json={})
    assert missing.status_code == 400 and "local_part" in missing.json()["error"]
    assert api.post("/v1/inboxes", json={"local_part": ["x"]}).status_code == 400
    bad_hook = api.post(base, json={"local_part": "hooked", "webhook": {"endpoint": "ftp://x"}})
    assert bad_hook.status_code == 400 and "endpoint" in bad_hook.json()["error"]
    bad_event = api.post(base, json={"local_part": "hooked", "webhook": {"endpoint": "https://x.example",
                                                                         "events": ["nope"]}})
    assert bad_event.status_code == 400 and "events" in bad_event.json()["error"]

    name = f"shared-{uuid.uuid4().hex[:6]}"
    assert api.post("/v1/inboxes", json={"local_part": name}).status_code == 201
    with running.client(running.new_key()) as other_org:
        clash = other_org.post("/v1/inboxes", json={"local_part": name})
    assert clash.status_code == 409
    assert api.post(base, json={"local_part": "dup"}).status_code == 201
    assert api.post(base, json={"local_part": "DUP"}).status_code == 409
    second = api.post(base, json={"local_part": "second"}).json()["data"]
    rename = api.put(f"{base}/{second['id']}", json={"local_part": "dup"})
    assert rename.status_code == 409


def test_another_organisations_inbox_is_404_everywhere(running, api) -> None:
    domain = _domain(api)
    inbox = api.post(f"/v1/domains/{domain['id']}/inboxes", json={"local_part": "mine"}).json()["data"]
    shared = api.post("/v1/inboxes", json={"local_part": f"mine-{uuid.uuid4().hex[:6]}"}).json()["data"]
    with running.client(running.new_key()) as stranger:
        for path in [f"/v1/inboxes/{inbox['id']}", f"/v1/domains/{domain['id']}/inboxes/{inbox['id']}",
                     f"/v1/inboxes/{shared['id']}",
                     f"/v1/domains/{shared['domain_id']}/inboxes/{shared['id']}"]:
            assert stranger.get(path).status_code == 404, path
            assert stranger.put(path, json={"status": "paused"}).status_code in (404, 405), path
            assert stranger.delete(path).status_code in (404, 405), path
        assert stranger.patch(f"/v1/inboxes/{inbox['id']}", json={"name": "x"}).status_code == 404
        assert stranger.get("/v1/inboxes").json() == {"data": []}
        # the shared domain is visible to everyone, but not other organisations' inboxes on it
        listed = stranger.get(f"/v1/domains/{shared['domain_id']}/inboxes")
        assert listed.status_code == 200 and listed.json() == {"data": []}
    assert api.get(f"/v1/inboxes/{inbox['id']}").status_code == 200


def test_deleting_an_inbox_removes_its_mail(running, api) -> None:
    sender = api.post("/v1/inboxes", json={"local_part": f"from-{uuid.uuid4().hex[:6]}"}).json()["data"]
    doomed = api.post("/v1/inboxes", json={"local_part": f"doomed-{uuid.uuid4().hex[:6]}"}).json()["data"]
    sent = api.post("/v1/messages/send", json={"to": doomed["address"], "subject": "bye", "text": "soon gone",
                                               "inboxId": sender["id"]})
    assert sent.status_code == 200, sent.text
    threads = api.get("/v1/threads", params={"inbox_id": doomed["id"]}).json()["data"]
    assert len(threads) == 1

    assert api.delete(f"/v1/domains/{doomed['domain_id']}/inboxes/{doomed['id']}").json() == {"data": {"ok": True}}

    def leftovers() -> tuple[int, int]:
        db = running.server.services.database
        return (db.one("SELECT COUNT(*) FROM messages WHERE inbox_id = ?", (doomed["id"],))[0],
                db.one("SELECT COUNT(*) FROM threads WHERE inbox_id = ?", (doomed["id"],))[0])

    assert running.run(leftovers) == (0, 0)
    assert api.get("/v1/threads", params={"inbox_id": doomed["id"]}).status_code == 404
    # the sender's copy of the conversation is untouched
    assert len(api.get("/v1/threads", params={"inbox_id": sender["id"]}).json()["data"]) == 1


def test_only_keys_that_can_write_inboxes_see_the_webhook_secret(running) -> None:
    org = f"secret-org-{uuid.uuid4().hex[:6]}"
    writer_key = running.new_key(["read", "write"], org=org)
    reader_key = running.new_key(["read"], org=org)
    with running.client(writer_key) as writer, running.client(reader_key) as reader:
        domain = _domain(writer)
        created = writer.post(f"/v1/domains/{domain['id']}/inboxes",
                              json={"local_part": "hooks", "webhook": {"endpoint": "https://hooks.example/s"}})
        inbox = created.json()["data"]
        secret = inbox["webhook"]["secret"]
        assert secret.startswith("whsec_")
        reads = ["/v1/inboxes", f"/v1/inboxes?domain_id={domain['id']}", f"/v1/inboxes/{inbox['id']}",
                 f"/v1/domains/{domain['id']}/inboxes", f"/v1/domains/{domain['id']}/inboxes/{inbox['id']}",
                 "/v1/domains", f"/v1/domains/{domain['id']}", "/v1/openapi.json"]
        for path in reads:
            seen = reader.get(path)
            assert seen.status_code == 200, path
            assert secret not in seen.text, path
        assert reader.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["webhook"] == {
            "endpoint": "https://hooks.example/s", "events": ["email.received"]}
        assert writer.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["webhook"]["secret"] == secret
        assert [i["webhook"]["secret"] for i in writer.get("/v1/inboxes").json()["data"]] == [secret]
    with running.client(running.new_key(["admin"], org=org)) as admin:
        assert admin.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["webhook"]["secret"] == secret
    with running.client(running.new_key(["inboxes:read", "webhooks:write"], org=org)) as narrow:
        assert secret not in narrow.get(f"/v1/inboxes/{inbox['id']}").text
    sdk = CommuneClient(api_key=reader_key, base_url=running.url)
    hooked = sdk.inboxes.get(domain["id"], inbox["id"])
    assert hooked.webhook.endpoint == "https://hooks.example/s" and hooked.webhook.secret is None
