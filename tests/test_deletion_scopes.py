"""The `email` (data-subject erasure) and `domain` deletion scopes, through the API and the official CLI."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.store.migrations import MIGRATIONS, THREAD_PARTICIPANTS
from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.official_clients import run_cli
from tests.smtp_sink import SmtpSink, wait_until
from tests.test_deletion import Org, assert_exact, blob_exists, confirm, counts, mail, request, sql

REMOTE = "erasure-remote.test"
CAROL = f"carol@{REMOTE}"
BOB = f"bob@{REMOTE}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    dns_server.publish(REMOTE, "MX", f"10 mx.{REMOTE}.")
    running = start_server(tmp_path_factory.mktemp("deletion-scopes"), dns_server,
                           relay=f"127.0.0.1:{smtp_sink.port}", engine=engine)
    yield running
    running.stop()


@pytest.fixture
def org(server: Running) -> Iterator[Org]:
    made = Org(server)
    yield made
    made.close()


@pytest.fixture
def other(server: Running) -> Iterator[Org]:
    made = Org(server)
    yield made
    made.close()


def upload(api: httpx.Client, content: bytes, filename: str) -> str:
    response = api.post("/v1/attachments/upload", json={"content": base64.b64encode(content).decode(),
                                                        "filename": filename, "mime_type": "text/plain"})
    assert response.status_code == 201, response.text
    return response.json()["data"]["attachment_id"]


def messages_of(api: httpx.Client, inbox: dict) -> list[str]:
    return [m["metadata"]["subject"] for m in api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]]


def carol_everywhere(server: Running, smtp_sink: SmtpSink, org: Org, other: Org) -> dict:
    """Carol writes in with a file, is cc'd on a thread that goes on without her, and is sent a quote with an
    uploaded file (delivered); Dan's mail and another organisation's mail from Carol are there too."""
    desk, sales = make_inbox(org.api), make_inbox(org.api)
    scan, raw, quote = b"carol's passport scan " * 30, b"raw mail from carol " * 20, b"quote for carol " * 25
    order = mail(server, desk, "Order 1", [scan], raw=raw, sender=CAROL, to=[desk["address"]])
    lunch = mail(server, desk, "Team lunch", sender=BOB, to=[desk["address"]], cc=[CAROL],
                 smtp_message_id=f"<lunch-{uuid.uuid4().hex}@{REMOTE}>")
    follow_up = mail(server, desk, "Re: Team lunch", sender=BOB, to=[desk["address"]],
                     in_reply_to=lunch["metadata"]["message_id"])
    dans = mail(server, desk, "Dan's note", sender=f"dan@{REMOTE}", to=[desk["address"]])
    quote_id = upload(org.api, quote, "quote.txt")
    smtp_sink.answer("250 ok")
    sent = org.api.post("/v1/messages/send", json={"to": CAROL, "subject": "Your quote", "text": "Attached.",
                                                   "inboxId": sales["id"], "attachments": [quote_id]})
    assert sent.status_code == 200, sent.text
    sent_id = sent.json()["data"]["id"]

    def delivered() -> list[dict]:
        events = org.api.get("/v1/delivery/events", params={"message_id": sent_id}).json()["data"]
        return events if any(e["event_type"] == "sent" for e in events) else []

    events = wait_until(delivered)
    theirs_inbox = make_inbox(other.api)
    theirs = mail(server, theirs_inbox, "Hello other org", sender=CAROL, to=[theirs_inbox["address"]])
    return {"desk": desk, "sales": sales, "order": order, "lunch": lunch, "follow_up": follow_up, "dans": dans,
            "quote_id": quote_id, "sent_id": sent_id, "events": events, "theirs_inbox": theirs_inbox,
            "theirs": theirs, "blobs": (scan, raw, quote)}


def assert_carol_is_gone(server: Running, org: Org, other: Org, seeded: dict) -> None:
    desk, sales = seeded["desk"], seeded["sales"]
    assert messages_of(org.api, desk) == ["Dan's note", "Re: Team lunch"]
    assert messages_of(org.api, sales) == []
    assert org.api.get("/v1/search/threads", params={"q": "carol"}).json()["data"] == []
    assert org.api.get(f"/v1/attachments/{seeded['quote_id']}").status_code == 404
    assert org.api.get("/v1/delivery/events", params={"message_id": seeded["sent_id"]}).json()["data"] == []
    for content in seeded["blobs"]:
        assert not blob_exists(server, org.id, content)
    # The thread Carol was cc'd on stays, summarised from what remains and without her as a participant.
    threads = {t["thread_id"]: t for t in org.api.get("/v1/threads", params={"inbox_id": desk["id"]}).json()["data"]}
    lunch = threads[seeded["lunch"]["thread_id"]]
    assert (lunch["message_count"], lunch["participantCount"], lunch["subject"]) == (1, 2, "Team lunch")
    assert lunch["last_message_at"] == lunch["first_message_at"] == seeded["follow_up"]["created_at"]
    assert seeded["order"]["thread_id"] not in threads
    assert sql(server, "SELECT address FROM thread_participants WHERE org_id = ? AND address = ?", (org.id, CAROL)) == []
    # Another organisation's mail from the same address is not theirs to erase.
    assert messages_of(other.api, seeded["theirs_inbox"]) == ["Hello other org"]


def test_email_scope_erases_every_message_an_address_takes_part_in(server, smtp_sink, org, other) -> None:
    seeded = carol_everywhere(server, smtp_sink, org, other)
    before = counts(server, org.id)
    other_before = counts(server, other.id)
    assert [t["participantCount"] for t in org.api.get("/v1/search/threads", params={"q": "lunch"}).json()["data"]] == [3]

    created = request(org.api, email=CAROL.upper())
    assert created["scope"] == "email" and created["email"] == CAROL and created["status"] == "pending"
    assert "cannot be undone" in created["warning"]
    preview = created["preview"]
    assert preview["messages"] == 3  # her order, the lunch invitation she was cc'd on, the quote sent to her
    assert preview["attachments"] == 2  # the scan that came with her mail and the uploaded quote
    assert preview["thread_metadata"] == 2  # the lunch thread goes on without her
    assert preview["delivery_events"] == len(seeded["events"]) > 0
    assert preview["outbound_queue"] == 1
    assert preview["inboxes"] == preview["domains"] == preview["suppressions"] == 0

    result = confirm(org.api, created).json()
    assert result["status"] == "completed"
    assert_exact(before, counts(server, org.id), result)
    assert_carol_is_gone(server, org, other, seeded)
    assert counts(server, other.id) == other_before


def test_cli_requests_an_erasure_by_email_and_cannot_confirm_without_the_token(
        server, smtp_sink, org, other, tmp_path: Path) -> None:
    seeded = carol_everywhere(server, smtp_sink, org, other)
    code, created = run_cli(server.url, org.key, tmp_path, "data", "delete-request", "--email", CAROL)
    assert code == 0, created
    assert created["scope"] == "email" and created["preview"]["messages"] == 3
    code, shown = run_cli(server.url, org.key, tmp_path, "data", "delete-status", created["id"])
    assert code == 0 and shown["preview"] == created["preview"] and shown["status"] == "pending"

    # The CLI's confirm sends no token, so it is refused and nothing is deleted.
    code, _ = run_cli(server.url, org.key, tmp_path, "data", "delete-confirm", created["id"], "--yes")
    assert code != 0
    code, shown = run_cli(server.url, org.key, tmp_path, "data", "delete-status", created["id"])
    assert code == 0 and shown["status"] == "pending"
    assert messages_of(org.api, seeded["sales"]) == ["Your quote"]

    assert confirm(org.api, created).status_code == 200
    code, shown = run_cli(server.url, org.key, tmp_path, "data", "delete-status", created["id"])
    assert code == 0 and shown["status"] == "completed" and shown["deleted_counts"]["messages"] == 3
    assert_carol_is_gone(server, org, other, seeded)


def domain_with_mail(server: Running, org: Org, name: str) -> dict:
    """A domain of the organisation with two inboxes, mail in both (one with a file) and a suppression."""
    domain = org.api.post("/v1/domains", json={"name": name}).json()["data"]
    inboxes = []
    for local in ("sales", "support"):
        created = org.api.post(f"/v1/domains/{domain['id']}/inboxes", json={"local_part": local})
        assert created.status_code == 201, created.text
        inboxes.append(created.json()["data"])
    file = f"contract for {name} ".encode() * 20
    mail(server, inboxes[0], "Contract", [file], sender=CAROL, to=[inboxes[0]["address"]])
    mail(server, inboxes[0], "Invoice", sender=BOB, to=[inboxes[0]["address"]])
    mail(server, inboxes[1], "Ticket", sender=BOB, to=[inboxes[1]["address"]])
    suppressed = org.api.post("/v1/delivery/suppressions", json={"email": f"gone@{REMOTE}", "domain_id": domain["id"]})
    assert suppressed.status_code == 201, suppressed.text
    return {"domain": domain, "inboxes": inboxes, "file": file}


def test_domain_scope_deletes_the_domain_its_inboxes_and_their_data(server, org, other) -> None:
    name = f"erase-{uuid.uuid4().hex[:8]}.example"
    seeded = domain_with_mail(server, org, name)
    elsewhere = make_inbox(org.api)
    kept = mail(server, elsewhere, "Shared domain mail", sender=BOB, to=[elsewhere["address"]])
    theirs = domain_with_mail(server, other, name)  # the same name, unverified, in another organisation
    before, other_before = counts(server, org.id), counts(server, other.id)

    created = request(org.api, domainId=seeded["domain"]["id"])
    assert created["scope"] == "domain" and created["domain_id"] == seeded["domain"]["id"]
    preview = created["preview"]
    assert (preview["domains"], preview["inboxes"], preview["messages"], preview["attachments"],
            preview["thread_metadata"], preview["suppressions"]) == (1, 2, 3, 1, 3, 1)
    result = confirm(org.api, created).json()
    assert_exact(before, counts(server, org.id), result)

    assert org.api.get(f"/v1/domains/{seeded['domain']['id']}").status_code == 404
    for inbox in seeded["inboxes"]:
        assert org.api.get(f"/v1/inboxes/{inbox['id']}").status_code == 404
    assert not blob_exists(server, org.id, seeded["file"])
    assert [m["message_id"] for m in org.api.get("/v1/messages", params={"inbox_id": elsewhere["id"]}).json()["data"]] \
        == [kept["message_id"]]
    assert counts(server, other.id) == other_before
    assert other.api.get(f"/v1/domains/{theirs['domain']['id']}").json()["data"]["name"] == name
    # The name is free again for the organisation.
    assert org.api.post("/v1/domains", json={"name": name}).status_code == 201


def test_cli_requests_a_domain_deletion_by_domain_id(server, org, tmp_path: Path) -> None:
    name = f"erase-cli-{uuid.uuid4().hex[:8]}.example"
    seeded = domain_with_mail(server, org, name)
    code, created = run_cli(server.url, org.key, tmp_path, "data", "delete-request", "--domain-id",
                            seeded["domain"]["id"])
    assert code == 0, created
    assert created["scope"] == "domain" and created["preview"]["inboxes"] == 2 and created["preview"]["domains"] == 1
    assert confirm(org.api, created).status_code == 200
    code, listed = run_cli(server.url, org.key, tmp_path, "domains", "list")
    assert code == 0 and name not in [d["name"] for d in listed["data"]]


def test_domain_scope_on_the_shared_domain_takes_only_the_organisations_inboxes(server, org, other) -> None:
    mine, theirs = make_inbox(org.api), make_inbox(other.api)
    mail(server, mine, "mine", sender=BOB, to=[mine["address"]])
    mail(server, theirs, "theirs", sender=BOB, to=[theirs["address"]])
    created = request(org.api, domain_id=mine["domain_id"])
    assert (created["preview"]["domains"], created["preview"]["inboxes"], created["preview"]["messages"]) == (0, 1, 1)
    assert confirm(org.api, created).status_code == 200
    assert org.api.get(f"/v1/inboxes/{mine['id']}").status_code == 404
    assert org.api.get(f"/v1/domains/{mine['domain_id']}").status_code == 200
    assert messages_of(other.api, theirs) == ["theirs"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"email": CAROL, "domainId": "x"}, 400, "give one of inbox_id, domain_id or email"),
    ({"email": "not an address"}, 400, "email must be an email address"),
    ({"scope": "email"}, 400, "email is required"),
    ({"scope": "domain"}, 400, "domain_id is required"),
    ({"scope": "inbox", "email": CAROL, "inbox_id": "x"}, 400, "email does not apply"),
    ({"scope": "organization", "domain_id": "x"}, 400, "domain_id does not apply"),
    ({"domain_id": "no-such-domain"}, 404, "not found"),
])
def test_bad_email_and_domain_requests_are_refused(org, body: dict, status: int, words: str) -> None:
    response = org.api.post("/v1/data/deletion-request", json=body)
    assert response.status_code == status and words in response.json()["error"].lower(), response.text


def test_another_organisations_domain_cannot_be_named(org, other) -> None:
    domain = other.api.post("/v1/domains", json={"name": f"theirs-{uuid.uuid4().hex[:8]}.example"}).json()["data"]
    response = org.api.post("/v1/data/deletion-request", json={"domainId": domain["id"]})
    assert response.status_code == 404
    assert other.api.get(f"/v1/domains/{domain['id']}").status_code == 200


def test_mail_stored_before_the_participant_index_is_counted_and_erasable(tmp_path: Path, dns_server) -> None:
    """A data directory from before `thread_participants`: the upgrade indexes the mail already there."""
    conn = sqlite3.connect(tmp_path / "commune.db", isolation_level=None)
    before = MIGRATIONS.index(THREAD_PARTICIPANTS)
    for script in MIGRATIONS[:before]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {before}")
    at = "2024-01-01T00:00:00.000Z"
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org-old', 'old', ?)", (at,))
    conn.execute("INSERT INTO domains (id, org_id, name, status, records, created_at)"
                 " VALUES ('d-old', 'org-old', 'old.test', 'pending', '[]', ?)", (at,))
    conn.execute("INSERT INTO inboxes (id, org_id, domain_id, local_part, address, created_at)"
                 " VALUES ('i-old', 'org-old', 'd-old', 'desk', 'desk@old.test', ?)", (at,))
    conn.execute("INSERT INTO threads (id, org_id, inbox_id, domain_id, subject, first_message_at, last_message_at,"
                 " message_count) VALUES ('t-old', 'org-old', 'i-old', 'd-old', 'Old times', ?, ?, 2)", (at, at))
    for number, sender, cc in ((1, CAROL, [BOB]), (2, BOB, [])):
        people = [{"role": "sender", "identity": sender}, {"role": "to", "identity": "desk@old.test"},
                  *({"role": "cc", "identity": a} for a in cc)]
        conn.execute("INSERT INTO messages (id, org_id, thread_id, inbox_id, domain_id, direction, sender,"
                     " participants, subject, created_at) VALUES (?, 'org-old', 't-old', 'i-old', 'd-old',"
                     " 'inbound', ?, ?, 'Old times', ?)", (f"m-old-{number}", sender, json.dumps(people), at))
    conn.close()

    running = start_server(tmp_path, dns_server)
    try:
        with running.client(running.new_key(["read", "write", "data:delete"], org="old")) as api:
            [thread] = api.get("/v1/threads", params={"inbox_id": "i-old"}).json()["data"]
            assert thread["participantCount"] == 3
            created = request(api, email=CAROL)
            assert created["preview"]["messages"] == 1 and created["preview"]["thread_metadata"] == 0
            assert confirm(api, created).status_code == 200
            [thread] = api.get("/v1/threads", params={"inbox_id": "i-old"}).json()["data"]
            assert (thread["message_count"], thread["participantCount"]) == (1, 2)
    finally:
        running.stop()
