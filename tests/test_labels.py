"""Mail state on the server: labels on messages and threads, PATCH, label filters, inbox counts, `sent_at`,
permanent deletion, the trash purge and the upgrade of mail stored before labels existed."""

from __future__ import annotations

import hashlib
import json
import random
import smtplib
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from backend.retention import apply_retention
from backend.store.migrations import MAIL_STATE, MIGRATIONS
from backend.util import iso, utcnow
from tests.conftest import start_server
from tests.mailtools import ingest, make_inbox
from tests.test_live import frames, next_events

EMPTY_COUNTS = {"threads": 0, "unread_threads": 0, "flagged_threads": 0, "trash_threads": 0}


def mail(running, inbox: dict, subject: str, **fields: object) -> dict:
    time.sleep(0.002)  # lists order by arrival to the millisecond; keep each message's distinct
    message, new = ingest(running, inbox["id"], subject=subject, text=f"body of {subject}", **fields)
    assert new
    return message


def sql(running, query: str, params: tuple = ()) -> list[tuple]:
    services = running.server.services
    return running.run(lambda: [tuple(r) for r in services.database.query(query, params)])


def threads(api: httpx.Client, inbox: dict, **params: str) -> list[dict]:
    response = api.get("/v1/threads", params={"inbox_id": inbox["id"], **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def subjects(api: httpx.Client, inbox: dict, **params: str) -> list[str]:
    return [t["subject"] for t in threads(api, inbox, **params)]


def counts(api: httpx.Client, inbox: dict) -> dict:
    return api.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["counts"]


def patch(api: httpx.Client, path: str, **body: object) -> dict:
    response = api.patch(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_mail_arrives_unread_and_received_and_sent_mail_is_sent(running, api) -> None:
    inbox, other = make_inbox(api), make_inbox(api)
    received = mail(running, inbox, "Hello")
    assert received["labels"] == ["received", "unread"]
    [thread] = threads(api, inbox)
    assert thread["labels"] == ["received", "unread"] and thread["unread_count"] == 1
    sent = api.post("/v1/messages/send", json={"inbox_id": inbox["id"], "to": [other["address"]],
                                                "subject": "Out", "text": "hi"})
    assert sent.status_code == 200, sent.text
    [copy] = api.get("/v1/messages", params={"inbox_id": inbox["id"], "labels": "sent"}).json()["data"]
    assert copy["labels"] == ["sent"] and copy["subject"] == "Out"
    # The local recipient's copy is received mail.
    [delivered] = api.get("/v1/messages", params={"inbox_id": other["id"]}).json()["data"]
    assert delivered["labels"] == ["received", "unread"]
    assert counts(api, inbox) == {"threads": 2, "unread_threads": 1, "flagged_threads": 0, "trash_threads": 0}


def test_patch_thread_changes_the_labels_of_every_message_and_answers_the_thread(running, api) -> None:
    inbox = make_inbox(api)
    first = mail(running, inbox, "Plans", smtp_message_id="<plans-1@example.net>")
    second = mail(running, inbox, "Re: Plans", in_reply_to="<plans-1@example.net>")
    assert first["thread_id"] == second["thread_id"]
    thread_id = first["thread_id"]

    read = patch(api, f"/v1/threads/{thread_id}", remove_labels=["unread"], add_labels=["flagged", "Work"])
    assert read["thread_id"] == thread_id
    assert read["labels"] == ["flagged", "received", "work"] and read["unread_count"] == 0
    listed = api.get(f"/v1/threads/{thread_id}/messages").json()["data"]
    assert [m["labels"] for m in listed] == [["flagged", "received", "work"]] * 2
    # Status and assignee still work beside labels, in the same request.
    both = patch(api, f"/v1/threads/{thread_id}", status="waiting", assignedTo="ops", add_labels=["unread"])
    assert (both["status"], both["assigned_to"], both["unread_count"]) == ("waiting", "ops", 2)
    assert "unread" in both["labels"]
    # Nothing to change is no error, and the thread comes back as it is.
    assert patch(api, f"/v1/threads/{thread_id}")["labels"] == both["labels"]


def test_patch_message_labels_one_message_and_the_thread_shows_the_union(running, api) -> None:
    inbox = make_inbox(api)
    first = mail(running, inbox, "Invoice", smtp_message_id="<inv-1@example.net>")
    second = mail(running, inbox, "Re: Invoice", in_reply_to="<inv-1@example.net>")
    answered = patch(api, f"/v1/messages/{first['id']}", remove_labels=["unread"], add_labels=["flagged"])
    assert answered["id"] == first["id"] and answered["labels"] == ["flagged", "received"]
    assert api.get(f"/v1/messages/{second['id']}").json()["data"]["labels"] == ["received", "unread"]
    thread = api.get(f"/v1/threads/{first['thread_id']}").json()["data"]
    assert thread["labels"] == ["flagged", "received", "unread"] and thread["unread_count"] == 1
    patch(api, f"/v1/messages/{second['id']}", remove_labels=["unread"])
    thread = api.get(f"/v1/threads/{first['thread_id']}").json()["data"]
    assert thread["labels"] == ["flagged", "received"] and thread["unread_count"] == 0
    patch(api, f"/v1/messages/{first['id']}", removeLabels=["flagged"])
    assert api.get(f"/v1/threads/{first['thread_id']}").json()["data"]["labels"] == ["received"]


def test_label_filters_and_the_trash_left_out_by_default(running, api) -> None:
    inbox = make_inbox(api)
    made = {name: mail(running, inbox, name) for name in ("alpha", "bravo", "charlie", "delta")}
    patch(api, f"/v1/threads/{made['alpha']['thread_id']}", add_labels=["flagged", "work"])
    patch(api, f"/v1/threads/{made['bravo']['thread_id']}", add_labels=["work"], remove_labels=["unread"])
    patch(api, f"/v1/threads/{made['charlie']['thread_id']}", add_labels=["trash", "work"])
    patch(api, f"/v1/threads/{made['delta']['thread_id']}", add_labels=["archived"])

    assert subjects(api, inbox) == ["delta", "bravo", "alpha"]
    assert subjects(api, inbox, labels="work") == ["bravo", "alpha"]
    assert subjects(api, inbox, labels="work,flagged") == ["alpha"]
    assert subjects(api, inbox, labels="unread", exclude_labels="archived") == ["alpha"]
    assert subjects(api, inbox, exclude_labels="archived,work") == []
    assert subjects(api, inbox, labels="trash") == ["charlie"]
    assert subjects(api, inbox, labels="trash,work") == ["charlie"]
    assert subjects(api, inbox, labels="archived") == ["delta"]
    assert subjects(api, inbox, labels="nothing-has-this") == []
    by_domain = api.get("/v1/threads", params={"domain_id": inbox["domain_id"], "labels": "work"}).json()["data"]
    assert [t["subject"] for t in by_domain if t["inbox_id"] == inbox["id"]] == ["bravo", "alpha"]

    def listed(**params: str) -> list[str]:
        response = api.get("/v1/messages", params={"inbox_id": inbox["id"], **params})
        assert response.status_code == 200, response.text
        return [m["subject"] for m in response.json()["data"]]

    assert listed() == ["delta", "bravo", "alpha"]
    assert listed(labels="work") == ["bravo", "alpha"]
    assert listed(labels="trash") == ["charlie"]
    assert listed(exclude_labels="unread") == ["bravo"]
    assert counts(api, inbox) == {"threads": 3, "unread_threads": 2, "flagged_threads": 1, "trash_threads": 1}

    # Restored from the trash: back in the lists and the counts.
    patch(api, f"/v1/threads/{made['charlie']['thread_id']}", remove_labels=["trash"])
    assert subjects(api, inbox) == ["delta", "charlie", "bravo", "alpha"]
    assert counts(api, inbox) == {"threads": 4, "unread_threads": 3, "flagged_threads": 1, "trash_threads": 0}


def test_user_labels_beyond_ascii(running, api) -> None:
    inbox = make_inbox(api)
    tagged = mail(running, inbox, "Umbau")
    mail(running, inbox, "Other")
    assert patch(api, f"/v1/messages/{tagged['id']}", add_labels=["Büro/Ärger", "日本"])["labels"] == [
        "büro/ärger", "received", "unread", "日本"]
    assert subjects(api, inbox, labels="büro/ärger") == ["Umbau"]
    assert subjects(api, inbox, labels="BÜRO/ÄRGER,日本") == ["Umbau"]
    assert subjects(api, inbox, exclude_labels="日本") == ["Other"]
    listed = api.get("/v1/messages", params={"inbox_id": inbox["id"], "labels": "日本"}).json()["data"]
    assert [m["subject"] for m in listed] == ["Umbau"]
    found = api.get("/v1/search/threads", params={"q": "label:büro/ärger", "inbox_id": inbox["id"]}).json()
    assert [t["subject"] for t in found["data"]] == ["Umbau"]


def test_label_lists_page_with_cursors_bound_to_their_filter(running, api) -> None:
    inbox = make_inbox(api)
    for number in range(7):
        message = mail(running, inbox, f"m{number}")
        if number % 2 == 0:
            patch(api, f"/v1/threads/{message['thread_id']}", add_labels=["even"])
    seen, cursor = [], None
    while True:
        params = {"inbox_id": inbox["id"], "labels": "even", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = api.get("/v1/threads", params=params).json()
        seen += [t["subject"] for t in body["data"]]
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert seen == ["m6", "m4", "m2", "m0"]
    other_list = api.get("/v1/threads", params={"inbox_id": inbox["id"], "cursor": cursor})
    assert other_list.status_code == 400 and "different list" in other_list.json()["error"]
    ascending = api.get("/v1/threads", params={"inbox_id": inbox["id"], "labels": "even", "order": "asc"}).json()
    assert [t["subject"] for t in ascending["data"]] == ["m0", "m2", "m4", "m6"]


@pytest.mark.parametrize(("body", "field"), [
    ({"add_labels": ["sent"]}, "add_labels"),
    ({"remove_labels": ["received"]}, "remove_labels"),
    ({"add_labels": ["quarantine"]}, "add_labels"),
    ({"add_labels": [""]}, "add_labels"),
    ({"add_labels": ["x" * 65]}, "add_labels"),
    ({"add_labels": ['a"b']}, "add_labels"),
    ({"add_labels": ["a,b"]}, "add_labels"),
    ({"add_labels": ["tab\there"]}, "add_labels"),
    ({"add_labels": "flagged"}, "add_labels"),
    ({"add_labels": [1]}, "add_labels"),
    ({"add_labels": [f"l{i}" for i in range(51)]}, "add_labels"),
])
def test_bad_label_changes_are_400(running, api, body, field) -> None:
    message = mail(running, make_inbox(api), "Target")
    for path in (f"/v1/messages/{message['id']}", f"/v1/threads/{message['thread_id']}"):
        response = api.patch(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert field in response.json()["error"]
    assert api.get(f"/v1/messages/{message['id']}").json()["data"]["labels"] == ["received", "unread"]


def test_a_message_holds_at_most_fifty_labels(running, api) -> None:
    message = mail(running, make_inbox(api), "Many")
    patch(api, f"/v1/messages/{message['id']}", add_labels=[f"l{i}" for i in range(48)])
    too_many = api.patch(f"/v1/messages/{message['id']}", json={"add_labels": ["one", "two"]})
    assert too_many.status_code == 400 and "50" in too_many.json()["error"]
    assert len(api.get(f"/v1/messages/{message['id']}").json()["data"]["labels"]) == 50


def test_bad_label_filters_are_400(running, api) -> None:
    inbox = make_inbox(api)
    for params in ({"labels": 'a"b'}, {"exclude_labels": "x" * 65}, {"labels": ",".join(f"l{i}" for i in range(11))}):
        for path in ("/v1/threads", "/v1/messages"):
            response = api.get(path, params={"inbox_id": inbox["id"], **params})
            assert response.status_code == 400, (path, params, response.text)


def test_other_organisations_cannot_label_or_delete(running, api) -> None:
    message = mail(running, make_inbox(api), "Mine")
    with running.client(running.new_key()) as stranger:
        for method, path in (("PATCH", f"/v1/messages/{message['id']}"), ("PATCH", f"/v1/threads/{message['thread_id']}"),
                             ("DELETE", f"/v1/messages/{message['id']}"), ("DELETE", f"/v1/threads/{message['thread_id']}")):
            response = stranger.request(method, path, json={"add_labels": ["mine"]} if method == "PATCH" else None)
            assert response.status_code == 404, (method, path, response.text)
    assert api.get(f"/v1/messages/{message['id']}").json()["data"]["labels"] == ["received", "unread"]


def test_label_changes_and_deletion_need_write_scopes(running, api) -> None:
    message = mail(running, make_inbox(api), "Scoped")
    reader = running.new_key(["read"], org=org_name(running, message))
    with running.client(reader) as client:
        assert client.patch(f"/v1/messages/{message['id']}", json={"add_labels": ["x"]}).status_code == 403
        assert client.patch(f"/v1/threads/{message['thread_id']}", json={"add_labels": ["x"]}).status_code == 403
        assert client.delete(f"/v1/messages/{message['id']}").status_code == 403
        assert client.delete(f"/v1/threads/{message['thread_id']}").status_code == 403
        assert client.get(f"/v1/messages/{message['id']}").status_code == 200


def org_name(running, message: dict) -> str:
    [(name,)] = sql(running, "SELECT orgs.name FROM orgs JOIN messages ON messages.org_id = orgs.id"
                             " WHERE messages.id = ?", (message["id"],))
    return name


def test_sent_at_is_the_date_header(running, api) -> None:
    inbox, other = make_inbox(api), make_inbox(api)
    dated = mail(running, inbox, "Dated", date="2024-03-05T09:10:11.000Z")
    assert dated["sent_at"] == "2024-03-05T09:10:11.000Z" and dated["created_at"] != dated["sent_at"]
    assert mail(running, inbox, "Undated")["sent_at"] is None
    listed = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert [m["sent_at"] for m in listed] == [None, "2024-03-05T09:10:11.000Z"]
    # Over SMTP: the header as written, in UTC; an unparseable one is null.
    for date, expected in (("Tue, 05 Mar 2024 10:10:11 +0100", "2024-03-05T09:10:11.000Z"),
                           ("not a date", None)):
        raw = (f"From: a@example.net\r\nTo: {inbox['address']}\r\nSubject: smtp {date}\r\nDate: {date}\r\n"
               f"Message-ID: <{hashlib.sha1(date.encode()).hexdigest()}@example.net>\r\n\r\nhi\r\n")
        with smtplib.SMTP("127.0.0.1", running.server.smtp_port) as smtp:
            smtp.sendmail("a@example.net", [inbox["address"]], raw.encode())
        [found] = [m for m in api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
                   if m["subject"] == f"smtp {date}"]
        assert found["sent_at"] == expected
    # Sent mail: the Date header the server wrote.
    sent = api.post("/v1/messages/send", json={"inbox_id": other["id"], "to": [inbox["address"]],
                                                "subject": "Sent", "text": "x"}).json()
    copy = api.get(f"/v1/messages/{sent['data']['message_id']}").json()["data"]
    assert copy["sent_at"] is not None and copy["sent_at"][:16] <= copy["created_at"][:16]


def blob_exists(running, org_id: str, content: bytes) -> bool:
    return running.server.services.blobs.exists(org_id, hashlib.sha256(content).hexdigest())


def org_id_of(running, message: dict) -> str:
    return sql(running, "SELECT org_id FROM messages WHERE id = ?", (message["id"],))[0][0]


def test_delete_thread_removes_messages_attachments_and_blobs_and_is_audited(running, api) -> None:
    inbox = make_inbox(api)
    only_here, shared = b"only in this thread " * 30, b"also kept elsewhere " * 30
    first = mail(running, inbox, "Doomed", smtp_message_id="<doomed@example.net>", raw=b"raw doomed " * 40,
                 attachments=[("a.bin", "application/octet-stream", only_here),
                              ("b.bin", "application/octet-stream", shared)])
    mail(running, inbox, "Re: Doomed", in_reply_to="<doomed@example.net>")
    keeper = mail(running, inbox, "Keeper", attachments=[("b.bin", "application/octet-stream", shared)])
    org_id = org_id_of(running, first)
    attachment_id = first["attachments"][0]

    response = api.delete(f"/v1/threads/{first['thread_id']}")
    assert response.status_code == 200, response.text
    result = response.json()["data"]
    assert result["deleted"] is True and result["deleted_counts"]["messages"] == 2
    assert result["deleted_counts"]["attachments"] == 2
    assert api.get(f"/v1/threads/{first['thread_id']}").status_code == 404
    assert api.get(f"/v1/messages/{first['id']}").status_code == 404
    assert api.get(f"/v1/attachments/{attachment_id}").status_code == 404
    assert not blob_exists(running, org_id, only_here)
    assert not blob_exists(running, org_id, b"raw doomed " * 40)
    assert blob_exists(running, org_id, shared)
    assert [t["subject"] for t in threads(api, inbox)] == ["Keeper"]
    assert api.get(f"/v1/messages/{keeper['id']}").status_code == 200
    assert sql(running, "SELECT COUNT(*) FROM thread_labels WHERE thread_id = ?", (first["thread_id"],)) == [(0,)]
    assert sql(running, "SELECT COUNT(*) FROM message_labels WHERE message_id = ?", (first["id"],)) == [(0,)]
    with running.client(running.new_key(["admin"], org=org_name(running, keeper))) as admin:
        [entry] = admin.get("/v1/audit-logs", params={"action": "thread.deleted"}).json()["data"]
    assert entry["target_id"] == first["thread_id"] and entry["key_id"]
    assert api.delete(f"/v1/threads/{first['thread_id']}").status_code == 404


def test_delete_message_keeps_the_rest_of_its_thread(running, api) -> None:
    inbox = make_inbox(api)
    first = mail(running, inbox, "Pair", smtp_message_id="<pair@example.net>",
                 attachments=[("p.bin", "application/octet-stream", b"pair file " * 50)])
    second = mail(running, inbox, "Re: Pair", in_reply_to="<pair@example.net>")
    org_id = org_id_of(running, first)
    response = api.delete(f"/v1/messages/{second['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["deleted_counts"] == {"messages": 1}
    thread = api.get(f"/v1/threads/{first['thread_id']}").json()["data"]
    assert thread["message_count"] == 1 and thread["unread_count"] == 1
    assert api.get(f"/v1/messages/{second['id']}").status_code == 404
    # The last message takes its thread and its file along.
    assert api.delete(f"/v1/messages/{first['id']}").json()["data"]["deleted_counts"]["thread_metadata"] == 1
    assert api.get(f"/v1/threads/{first['thread_id']}").status_code == 404
    assert not blob_exists(running, org_id, b"pair file " * 50)
    assert counts(api, inbox) == EMPTY_COUNTS
    with running.client(running.new_key(["admin"], org=org_name_by_org(running, org_id))) as admin:
        entries = admin.get("/v1/audit-logs", params={"action": "message.deleted"}).json()["data"]
    assert {e["target_id"] for e in entries} == {first["id"], second["id"]}


def org_name_by_org(running, org_id: str) -> str:
    return sql(running, "SELECT name FROM orgs WHERE id = ?", (org_id,))[0][0]


def trashed_since(running, thread_id: str, days: int) -> None:
    """Pretend the thread went to the trash `days` ago."""
    when = iso(utcnow() - timedelta(days=days))

    def work() -> None:
        with running.server.services.database.transaction() as conn:
            conn.execute("UPDATE thread_labels SET added_at = ? WHERE thread_id = ? AND label = 'trash'",
                         (when, thread_id))

    running.run(work)


def test_retention_sweep_purges_threads_long_in_the_trash(running, api) -> None:
    inbox = make_inbox(api)
    assert inbox["trash_days"] == 30
    old, recent, kept = (mail(running, inbox, name) for name in ("old trash", "recent trash", "kept"))
    for message in (old, recent):
        patch(api, f"/v1/threads/{message['thread_id']}", add_labels=["trash"])
    trashed_since(running, old["thread_id"], days=31)
    running.run(lambda: apply_retention(running.server.services))
    assert api.get(f"/v1/threads/{old['thread_id']}").status_code == 404
    assert subjects(api, inbox, labels="trash") == ["recent trash"]
    assert subjects(api, inbox) == ["kept"]
    with running.client(running.new_key(["admin"], org=org_name(running, kept))) as admin:
        [entry] = admin.get("/v1/audit-logs", params={"action": "trash.purged"}).json()["data"]
    assert entry["target_id"] == inbox["id"] and entry["detail"]["deleted_counts"]["messages"] == 1

    # A shorter trash period reaches the recent one too.
    assert api.patch(f"/v1/inboxes/{inbox['id']}", json={"trash_days": 1}).json()["data"]["trash_days"] == 1
    trashed_since(running, recent["thread_id"], days=2)
    running.run(lambda: apply_retention(running.server.services))
    assert subjects(api, inbox, labels="trash") == []
    assert api.patch(f"/v1/inboxes/{inbox['id']}", json={"trash_days": 0}).status_code == 400


def test_counts_follow_every_change_and_list_with_the_inboxes(running, api) -> None:
    first, second = make_inbox(api), make_inbox(api)
    assert first["counts"] == EMPTY_COUNTS
    one = mail(running, first, "one")
    mail(running, first, "two")
    mail(running, second, "three")
    patch(api, f"/v1/threads/{one['thread_id']}", add_labels=["flagged"])
    listed = {i["id"]: i["counts"] for i in api.get("/v1/inboxes").json()["data"]}
    assert listed[first["id"]] == {"threads": 2, "unread_threads": 2, "flagged_threads": 1, "trash_threads": 0}
    assert listed[second["id"]] == {"threads": 1, "unread_threads": 1, "flagged_threads": 0, "trash_threads": 0}
    by_domain = api.get(f"/v1/domains/{first['domain_id']}/inboxes").json()["data"]
    assert {i["id"]: i["counts"] for i in by_domain if i["id"] in listed} == listed
    patch(api, f"/v1/threads/{one['thread_id']}", add_labels=["trash"])
    assert counts(api, first) == {"threads": 1, "unread_threads": 1, "flagged_threads": 0, "trash_threads": 1}


def test_mail_stored_before_labels_is_upgraded_in_place(tmp_path: Path, dns_server) -> None:
    conn = sqlite3.connect(tmp_path / "commune.db", isolation_level=None)
    before = MIGRATIONS.index(MAIL_STATE)
    for script in MIGRATIONS[:before]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {before}")
    at, later = "2024-01-01T00:00:00.000Z", "2024-01-02T00:00:00.000Z"
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org-old', 'old-labels', ?)", (at,))
    conn.execute("INSERT INTO domains (id, org_id, name, status, records, created_at)"
                 " VALUES ('d-old', 'org-old', 'old.test', 'pending', '[]', ?)", (at,))
    conn.execute("INSERT INTO inboxes (id, org_id, domain_id, local_part, address, created_at)"
                 " VALUES ('i-old', 'org-old', 'd-old', 'desk', 'desk@old.test', ?)", (at,))
    for thread, quarantined in (("t-old", 0), ("t-bad", 1)):
        conn.execute("INSERT INTO threads (id, org_id, inbox_id, domain_id, subject, first_message_at,"
                     " last_message_at, message_count, unread_count, quarantined)"
                     " VALUES (?, 'org-old', 'i-old', 'd-old', ?, ?, ?, 1, 1, ?)",
                     (thread, thread, at, later, quarantined))
    rows = (("m-in", "t-old", "inbound", "pal@friend.test", '[]', at, '{"sender_name": "Pal"}'),
            ("m-out", "t-old", "outbound", "desk@old.test", '[]', later, "{}"),
            ("m-bad", "t-bad", "inbound", "evil@phish.test", '["quarantine"]', at, '{"sender_name": "Evil"}'))
    for message_id, thread, direction, sender, labels, created, extra in rows:
        people = [{"role": "sender", "identity": sender},
                  {"role": "to", "identity": "desk@old.test" if direction == "inbound" else "pal@friend.test"}]
        conn.execute("INSERT INTO messages (id, org_id, thread_id, inbox_id, domain_id, direction, sender,"
                     " participants, subject, text_body, labels, extra, created_at)"
                     " VALUES (?, 'org-old', ?, 'i-old', 'd-old', ?, ?, ?, ?, '日本語の本文です', ?, ?, ?)",
                     (message_id, thread, direction, sender, json.dumps(people), thread, labels, extra, created))
    conn.close()

    running = start_server(tmp_path, dns_server)
    try:
        with running.client(running.new_key(["read", "write"], org="old-labels")) as api:
            [thread] = api.get("/v1/threads", params={"inbox_id": "i-old"}).json()["data"]
            assert thread["labels"] == ["received", "sent"] and thread["unread_count"] == 0
            by_id = {m["id"]: m for m in api.get("/v1/messages", params={"inbox_id": "i-old", "labels": ""}).json()["data"]}
            assert by_id["m-in"]["labels"] == ["received"] and by_id["m-out"]["labels"] == ["sent"]
            assert by_id["m-in"]["sent_at"] is None
            [bad] = api.get("/v1/threads", params={"inbox_id": "i-old", "labels": "quarantine"}).json()["data"]
            assert bad["thread_id"] == "t-bad" and bad["labels"] == ["quarantine", "received"]
            # THREAD_SENDER_NAME fills each summary's name from its newest message.
            assert (bad["last_sender_name"], thread["last_sender_name"]) == ("Evil", None)
            inbox = api.get("/v1/inboxes/i-old").json()["data"]
            assert inbox["trash_days"] == 30
            assert inbox["counts"] == {"threads": 1, "unread_threads": 0, "flagged_threads": 0, "trash_threads": 0}
            # The label machinery works on the upgraded rows.
            patch(api, "/v1/threads/t-old", add_labels=["flagged", "unread"])
            assert api.get("/v1/inboxes/i-old").json()["data"]["counts"]["flagged_threads"] == 1
            assert [t["thread_id"] for t in api.get("/v1/threads", params={
                "inbox_id": "i-old", "labels": "flagged"}).json()["data"]] == ["t-old"]
            # Correspondents and the trigram index are built from the mail already there.
            contacts = api.get("/v1/contacts").json()["data"]
            assert [(c["address"], c["name"]) for c in contacts] == [
                ("pal@friend.test", "Pal"), ("evil@phish.test", "Evil")]
            found = api.get("/v1/search/threads", params={"q": "本文", "inbox_id": "i-old"}).json()["data"]
            assert [t["thread_id"] for t in found] == ["t-old"]
            found = api.get("/v1/search/threads", params={"q": "語の本文", "inbox_id": "i-old"}).json()["data"]
            assert [t["thread_id"] for t in found] == ["t-old"]
    finally:
        running.stop()


def test_contacts_are_the_addresses_mail_was_exchanged_with_most_recent_first(running, api) -> None:
    inbox, desk = make_inbox(api), make_inbox(api)
    sent = api.post("/v1/messages/send", json={"inbox_id": inbox["id"], "to": [f"Desk <{desk['address']}>"],
                                                "subject": "Hi", "text": "x"})
    assert sent.status_code == 200, sent.text
    mail(running, inbox, "From Ann", sender="ann@people.example", sender_name="Ann Ärger")
    mail(running, inbox, "From Zoe", sender="zoe@people.example")

    def contacts(**params: str) -> list[tuple[str, str | None]]:
        response = api.get("/v1/contacts", params=params)
        assert response.status_code == 200, response.text
        return [(c["address"], c["name"]) for c in response.json()["data"]]

    everyone = contacts()
    assert everyone[:2] == [("zoe@people.example", None), ("ann@people.example", "Ann Ärger")]
    # The sent message's recipient, and its sender as the local recipient's copy saw it.
    assert {a for a, _ in everyone[2:]} == {desk["address"], inbox["address"]}
    assert contacts(q="people") == [("zoe@people.example", None), ("ann@people.example", "Ann Ärger")]
    assert contacts(q="ÄRGER") == contacts(q="ärger") == [("ann@people.example", "Ann Ärger")]
    assert contacts(q="ANN") == [("ann@people.example", "Ann Ärger")]
    assert contacts(q="nobody") == []
    first = api.get("/v1/contacts", params={"limit": 2}).json()
    assert first["has_more"] is True
    rest = api.get("/v1/contacts", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [(c["address"], c["name"]) for c in rest["data"]] == everyone[2:] and rest["has_more"] is False
    assert api.get("/v1/contacts", params={"q": "x", "cursor": first["next_cursor"]}).status_code == 400
    assert api.get("/v1/contacts", params={"q": "x" * 201}).status_code == 400
    with running.client(running.new_key()) as stranger:
        assert stranger.get("/v1/contacts").json()["data"] == []
    # A data-subject erasure takes the address book entry too.
    with running.client(running.new_key(["read", "write", "data:delete"], org=org_name_by_org(
            running, sql(running, "SELECT org_id FROM inboxes WHERE id = ?", (inbox["id"],))[0][0]))) as eraser:
        created = eraser.post("/v1/data/deletion-request", json={"email": "zoe@people.example"}).json()
        assert created["preview"]["contacts"] == 1
        confirmed = eraser.post(f"/v1/data/deletion-request/{created['id']}/confirm",
                                json={"confirmation_token": created["confirmation_token"]})
        assert confirmed.status_code == 200, confirmed.text
    assert contacts() == everyone[1:]


def test_live_clients_see_label_changes_and_deletions(running, api) -> None:
    inbox = make_inbox(api)
    first = mail(running, inbox, "Live", smtp_message_id="<live@example.net>")
    second = mail(running, inbox, "Re: Live", in_reply_to="<live@example.net>")
    params = {"inbox_id": inbox["id"], "types": "thread.updated,thread.deleted"}
    with api.stream("GET", "/v1/events", params=params, timeout=10) as response:
        stream = frames(response)
        patch(api, f"/v1/messages/{first['id']}", remove_labels=["unread"])
        assert api.delete(f"/v1/messages/{second['id']}").status_code == 200
        assert api.delete(f"/v1/threads/{first['thread_id']}").status_code == 200
        events = next_events(stream, 3)
    assert [e["event"] for e in events] == ["thread.updated", "thread.updated", "thread.deleted"]
    assert events[0]["data"]["unread_count"] == 1 and events[0]["data"]["labels"] == ["received", "unread"]
    assert events[1]["data"]["message_count"] == 1 and events[1]["data"]["unread_count"] == 0
    assert events[2]["data"] == {"thread_id": first["thread_id"], "inbox_id": inbox["id"]}


def recount(running, inbox_id: str) -> dict[str, int]:
    """The inbox counts the slow way, from the threads' own label lists and hidden bits."""
    def count(where: str) -> int:
        return sql(running, f"SELECT COUNT(*) FROM threads WHERE inbox_id = ? AND {where}", (inbox_id,))[0][0]

    return {"threads": count("hidden = 0"),
            "unread_threads": count("hidden = 0 AND instr(labels, '\"unread\"') > 0"),
            "flagged_threads": count("hidden = 0 AND instr(labels, '\"flagged\"') > 0"),
            "trash_threads": count("instr(labels, '\"trash\"') > 0")}


def check_state(running, api: httpx.Client, inbox: dict) -> None:
    """Counters equal a recount, and every thread's labels, unread count and trash bit follow its messages."""
    assert counts(api, inbox) == recount(running, inbox["id"])
    threads_now = sql(running, "SELECT id, labels, unread_count, hidden FROM threads WHERE inbox_id = ?",
                      (inbox["id"],))
    for thread_id, labels, unread, hidden in threads_now:
        own = [json.loads(row[0]) for row in sql(running, "SELECT labels FROM messages WHERE thread_id = ?",
                                                   (thread_id,))]
        assert json.loads(labels) == sorted({label for message in own for label in message}), thread_id
        assert unread == sum("unread" in message for message in own), thread_id
        assert bool(hidden & 2) == ("trash" in json.loads(labels)), thread_id


def test_counts_and_thread_labels_stay_true_through_random_changes(running, api) -> None:
    rng = random.Random(14)
    inbox = make_inbox(api)
    messages: list[dict] = []
    for step in range(80):
        action = rng.choice(["new", "reply", "thread", "thread", "message", "message", "delete", "drop"])
        if action == "new" or not messages:
            messages.append(mail(running, inbox, f"t{step}", smtp_message_id=f"<s{step}@random.example>"))
        elif action == "reply":
            parent = rng.choice(messages)
            reply = mail(running, inbox, f"re {step}", smtp_message_id=f"<s{step}@random.example>",
                         in_reply_to=f"<s{parent['subject'].split()[-1].lstrip('t')}@random.example>")
            messages.append(reply)
        elif action in ("thread", "message"):
            target = rng.choice(messages)
            change = {rng.choice(["add_labels", "remove_labels"]): rng.sample(
                ["unread", "flagged", "trash", "archived", "work"], rng.randint(1, 2))}
            path = f"/v1/threads/{target['thread_id']}" if action == "thread" else f"/v1/messages/{target['id']}"
            assert api.patch(path, json=change).status_code in (200, 404)
        elif action == "delete":
            target = messages.pop(rng.randrange(len(messages)))
            assert api.delete(f"/v1/messages/{target['id']}").status_code in (200, 404)
        else:
            target = rng.choice(messages)
            assert api.delete(f"/v1/threads/{target['thread_id']}").status_code in (200, 404)
            messages = [m for m in messages if m["thread_id"] != target["thread_id"]]
        check_state(running, api, inbox)
    assert counts(api, inbox)["threads"] + counts(api, inbox)["trash_threads"] > 0
