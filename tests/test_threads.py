"""Threads and message lists over real HTTP, fed by the store's ingest as SMTP would feed it."""

from __future__ import annotations

import asyncio

from commune.types import Message, Thread, ThreadList

from backend.mail.model import IncomingMessage
from tests.mailtools import ingest, ingest_many, make_inbox


def test_a_reply_joins_its_thread_and_the_summary_follows(running, api) -> None:
    inbox = make_inbox(api)
    first, new = ingest(running, inbox["id"], subject="Order not received", text="Where is order 4521?",
                        smtp_message_id="<a1@example.net>", to=[inbox["address"]])
    assert new
    reply, _ = ingest(running, inbox["id"], subject="Re: Order not received", text="Any news?",
                      smtp_message_id="<a2@example.net>", in_reply_to="<a1@example.net>",
                      references=["<a1@example.net>"], sender="other@example.net",
                      attachments=[("note.txt", "text/plain", b"hello")])
    assert reply["thread_id"] == first["thread_id"]
    assert first["thread_id"].startswith("thread_")

    body = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()
    ThreadList.model_validate(body)
    assert body["has_more"] is False and body["next_cursor"] is None
    [thread] = body["data"]
    assert thread["thread_id"] == first["thread_id"]
    assert thread["subject"] == "Order not received"
    assert thread["message_count"] == 2
    assert thread["snippet"] == "Any news?"
    assert thread["last_direction"] == "inbound"
    assert thread["has_attachments"] is True
    assert thread["first_message_at"] <= thread["last_message_at"]

    messages = api.get(f"/v1/threads/{thread['thread_id']}/messages").json()["data"]
    parsed = [Message.model_validate(m) for m in messages]
    assert [m.content for m in parsed] == ["Where is order 4521?", "Any news?"]
    assert parsed[0].participants[0].role == "sender"
    assert parsed[0].participants[1].identity == inbox["address"]
    assert parsed[1].metadata.references == ["<a1@example.net>"]
    assert parsed[1].metadata.message_id == "<a2@example.net>"
    assert len(parsed[1].attachments) == 1 and len(parsed[1].attachments[0]) == 32
    newest_first = api.get(f"/v1/threads/{thread['thread_id']}/messages", params={"order": "desc", "limit": 1})
    assert [m["content"] for m in newest_first.json()["data"]] == ["Any news?"]


def test_the_same_message_id_twice_is_stored_once(running, api) -> None:
    inbox = make_inbox(api)
    first, new_first = ingest(running, inbox["id"], subject="Hi", text="once", smtp_message_id="<dup@x.net>")
    again, new_again = ingest(running, inbox["id"], subject="Hi", text="once", smtp_message_id="<dup@x.net>")
    assert (new_first, new_again) == (True, False)
    assert again["message_id"] == first["message_id"]
    [thread] = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"]
    assert thread["message_count"] == 1


def test_html_only_mail_still_has_text_content(running, api) -> None:
    inbox = make_inbox(api)
    stored, _ = ingest(running, inbox["id"], subject="Promo", text="",
                       html="<p>Hello <b>there</b></p><script>x()</script><p>Second</p>")
    assert stored["content"] == "Hello there\n\nSecond"
    Message.model_validate(stored)


def test_new_messages_are_announced_after_commit_and_hooks_run_inside_it(running, api) -> None:
    inbox = make_inbox(api)
    services = running.server.services
    seen: list[tuple[str, bool]] = []

    def hook(conn, box, message) -> None:
        seen.append((message["message_id"], conn.in_transaction))

    async def scenario() -> list[str]:
        box = services.domains.get_inbox_any(inbox["id"])
        sub = services.events.subscribe(box["org_id"], inbox_id=inbox["id"])
        services.mail.tx_hooks.append(hook)
        try:
            services.mail.ingest(box, IncomingMessage(sender="a@b.net", subject="Ping", text="pong"))
            return [(await asyncio.wait_for(sub.queue.get(), 5)).type for _ in range(2)]
        finally:
            services.mail.tx_hooks.remove(hook)
            services.events.unsubscribe(sub)

    kinds = running.run(scenario)
    assert kinds == ["message.received", "thread.updated"]
    assert len(seen) == 1 and seen[0][1] is True


def test_announced_thread_summary_equals_the_stored_thread(running, api) -> None:
    """`thread.updated` carries the row as the insert or update returned it: the same as a later read,
    participant count (kept by triggers) included, for a new thread and for a reply to it."""
    inbox = make_inbox(api)
    services = running.server.services
    first = IncomingMessage(sender="ann@b.net", to=[inbox["address"], "bob@b.net"], subject="Plan",
                            text="  first   words \n of the plan " * 30, smtp_message_id="<plan-1@b.net>")
    reply = IncomingMessage(sender="cat@b.net", to=[inbox["address"]], cc=["dan@b.net"], subject="Re: Plan",
                            text="", html="<p>Reply <b>here</b></p>", smtp_message_id="<plan-2@b.net>",
                            in_reply_to="<plan-1@b.net>")

    async def scenario() -> list[dict]:
        box = services.domains.get_inbox_any(inbox["id"])
        sub = services.events.subscribe(box["org_id"], inbox_id=inbox["id"])
        try:
            announced = []
            for message in (first, reply):
                services.mail.ingest(box, message)
                events = [await asyncio.wait_for(sub.queue.get(), 5) for _ in range(2)]
                announced.append(next(e.data for e in events if e.type == "thread.updated"))
            return announced
        finally:
            services.events.unsubscribe(sub)

    announced = running.run(scenario)
    [listed] = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"]
    assert announced[1] == {key: listed[key] for key in announced[1]}
    assert (listed["participantCount"], listed["message_count"], listed["snippet"]) == (5, 2, "Reply here")
    assert announced[0]["participantCount"] == 3 and announced[0]["snippet"].startswith("first words of the plan")
    assert len(announced[0]["snippet"]) == 200 and announced[0]["snippet"].endswith("…")


def test_thread_list_needs_a_filter_of_the_callers_own(running, api) -> None:
    assert api.get("/v1/threads").status_code == 400
    assert "inbox_id" in api.get("/v1/threads").json()["error"]
    inbox = make_inbox(api)
    stored, _ = ingest(running, inbox["id"], subject="Private", text="secret")
    with running.client(running.new_key()) as stranger:
        assert stranger.get("/v1/threads", params={"inbox_id": inbox["id"]}).status_code == 404
        assert stranger.get(f"/v1/threads/{stored['thread_id']}/messages").status_code == 404
        assert stranger.get("/v1/messages", params={"inbox_id": inbox["id"]}).status_code == 404
        shared = stranger.get("/v1/threads", params={"domain_id": inbox["domain_id"]})
        assert shared.status_code == 200 and shared.json()["data"] == []
    assert api.get("/v1/threads/thread_nope/messages").status_code == 404


def test_bad_paging_arguments_are_400s_naming_the_field(running, api) -> None:
    inbox = make_inbox(api)
    for params, field in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "x"}, "limit"),
                          ({"order": "up"}, "order"), ({"cursor": "!!!"}, "cursor"),
                          ({"cursor": "eyJmb28iOjF9"}, "cursor")):
        response = api.get("/v1/threads", params={"inbox_id": inbox["id"], **params})
        assert response.status_code == 400, params
        assert field in response.json()["error"]
    stored, _ = ingest(running, inbox["id"], subject="s", text="t")
    too_many = api.get(f"/v1/threads/{stored['thread_id']}/messages", params={"limit": 1001})
    assert too_many.status_code == 400 and "limit" in too_many.json()["error"]


def test_paging_walks_every_thread_exactly_once_in_both_orders(running, api) -> None:
    inbox = make_inbox(api)
    total = 2500
    ingest_many(running, inbox["id"], [{"sender": f"s{i}@example.net", "subject": f"t{i}", "text": "x"}
                                       for i in range(total)])
    for order in ("desc", "asc"):
        seen: list[str] = []
        stamps: list[str] = []
        cursor = None
        while True:
            params = {"inbox_id": inbox["id"], "limit": 100, "order": order}
            if cursor:
                params["cursor"] = cursor
            body = api.get("/v1/threads", params=params).json()
            seen += [t["thread_id"] for t in body["data"]]
            stamps += [t["last_message_at"] for t in body["data"]]
            if not body["has_more"]:
                break
            cursor = body["next_cursor"]
        assert len(seen) == total and len(set(seen)) == total
        assert stamps == sorted(stamps, reverse=order == "desc")
    first = api.get("/v1/threads", params={"inbox_id": inbox["id"], "limit": 5}).json()
    flipped = api.get("/v1/threads", params={"inbox_id": inbox["id"], "order": "asc",
                                             "cursor": first["next_cursor"]})
    assert flipped.status_code == 400
    other = make_inbox(api)
    foreign = api.get("/v1/threads", params={"inbox_id": other["id"], "cursor": first["next_cursor"]})
    assert foreign.status_code == 400
    Thread.model_validate(first["data"][0])


def test_message_list_filters(running, api) -> None:
    inbox = make_inbox(api)
    ingest(running, inbox["id"], subject="one", text="1", sender="Alice@Example.net")
    ingest(running, inbox["id"], subject="two", text="2", sender="bob@example.net")
    everything = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
    assert [m["metadata"]["subject"] for m in everything] == ["two", "one"]
    assert [Message.model_validate(m).direction for m in everything] == ["inbound", "inbound"]
    by_sender = api.get("/v1/messages", params={"sender": "bob@example.net", "inbox_id": inbox["id"]})
    assert [m["metadata"]["subject"] for m in by_sender.json()["data"]] == ["two"]
    middle = everything[0]["created_at"]
    before = api.get("/v1/messages", params={"inbox_id": inbox["id"], "before": middle, "order": "asc"})
    assert all(m["created_at"] < middle for m in before.json()["data"])
    after = api.get("/v1/messages", params={"inbox_id": inbox["id"], "after": "2000-01-01"})
    assert len(after.json()["data"]) == 2
    future = api.get("/v1/messages", params={"domain_id": inbox["domain_id"], "after": "2999-01-01T00:00:00Z"})
    assert future.json()["data"] == []
    paged = api.get("/v1/messages", params={"inbox_id": inbox["id"], "limit": 1}).json()
    assert paged["has_more"] is True
    rest = api.get("/v1/messages", params={"inbox_id": inbox["id"], "limit": 1, "cursor": paged["next_cursor"]})
    assert [m["metadata"]["subject"] for m in rest.json()["data"]] == ["one"]

    for value in ("yesterday", "2025-13-01", "9999-12-31T23:59:59-14:00"):
        bad = api.get("/v1/messages", params={"inbox_id": inbox["id"], "before": value})
        assert bad.status_code == 400 and "before" in bad.json()["error"]
    assert api.get("/v1/messages").status_code == 400
    assert api.get("/v1/messages", params={"inbox_id": inbox["id"], "limit": 1001}).status_code == 400


def test_a_reply_from_outside_joins_the_thread_of_the_message_it_answers(running, api, dns_server) -> None:
    dns_server.publish("outside.test", "MX", "10 mx.outside.test.")
    inbox = make_inbox(api)
    sent = api.post("/v1/messages/send", json={"to": "pat@outside.test", "subject": "Proposal", "text": "Attached",
                                               "inboxId": inbox["id"]}).json()["data"]
    answer, _ = ingest(running, inbox["id"], subject="Re: Proposal", text="Looks good", sender="pat@outside.test",
                       smtp_message_id="<r1@outside.test>", references=[sent["smtp_message_id"]])
    assert answer["thread_id"] == sent["thread_id"]
    [thread] = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"]
    assert (thread["message_count"], thread["last_direction"], thread["snippet"]) == (2, "inbound", "Looks good")


def test_thread_list_json_built_in_sqlite_equals_thread_json(running, api) -> None:
    """The list's thread objects come from SQL; they must be exactly what `thread_json` makes of the row."""
    from backend.models.mail import thread_json

    inbox = make_inbox(api)
    awkward, _ = ingest(running, inbox["id"], subject='He said "hi" \\ back\tthen 🎉 ünïcödé', text="x\x01y </script>",
                        smtp_message_id="<json-1@example.net>", to=[inbox["address"]],
                        attachments=[("a.bin", "application/octet-stream", b"\x00\x01")])
    ingest(running, inbox["id"], subject="plain", text="plain body", smtp_message_id="<json-2@example.net>",
           to=[inbox["address"]])
    thread_id = awkward["thread_id"]
    assert api.post(f"/v1/threads/{thread_id}/tags", json={"tags": ["vip", "é"]}).status_code < 300
    assert api.put(f"/v1/threads/{thread_id}/assign", json={"assigned_to": "ann@example.net"}).status_code < 300

    listed = api.get("/v1/threads", params={"inbox_id": inbox["id"], "limit": 1}).json()
    listed_rest = api.get("/v1/threads", params={"inbox_id": inbox["id"], "cursor": listed["next_cursor"]}).json()
    served = {t["thread_id"]: t for t in listed["data"] + listed_rest["data"]}

    def rows() -> list[dict]:
        return [dict(r) for r in running.server.services.database.query(
            "SELECT * FROM threads WHERE inbox_id = ?", (inbox["id"],))]

    expected = {row["id"]: thread_json(row) for row in running.run(rows)}
    assert len(expected) == 2
    assert served == expected
    assert served[thread_id]["tags"] == ["vip", "é"] and served[thread_id]["has_attachments"] is True


def test_thread_summary_names_its_last_sender_and_follows_deletions(running, api) -> None:
    inbox = make_inbox(api)
    first, _ = ingest(running, inbox["id"], subject="Relay migration", text="Plan attached.",
                      smtp_message_id="<name-1@fjordline.dk>", sender="soren@fjordline.dk",
                      sender_name="Søren Lindqvist", to=[inbox["address"]])
    thread_id = first["thread_id"]
    [listed] = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"]
    assert (listed["last_sender"], listed["last_sender_name"]) == ("soren@fjordline.dk", "Søren Lindqvist")

    reply, _ = ingest(running, inbox["id"], subject="Re: Relay migration", text="Looks good.",
                      smtp_message_id="<name-2@kestrel.de>", in_reply_to="<name-1@fjordline.dk>",
                      sender="zoe@kestrel.de", sender_name="Zoë Müller", to=[inbox["address"]])
    assert api.get(f"/v1/threads/{thread_id}").json()["data"]["last_sender_name"] == "Zoë Müller"

    nameless, _ = ingest(running, inbox["id"], subject="Re: Relay migration", text="+1",
                         smtp_message_id="<name-3@example.net>", in_reply_to="<name-2@kestrel.de>",
                         sender="bot@example.net", to=[inbox["address"]])
    assert api.get(f"/v1/threads/{thread_id}").json()["data"]["last_sender_name"] is None

    assert api.delete(f"/v1/messages/{nameless['message_id']}").is_success
    thread = api.get(f"/v1/threads/{thread_id}").json()["data"]
    assert (thread["last_sender"], thread["last_sender_name"]) == ("zoe@kestrel.de", "Zoë Müller")
