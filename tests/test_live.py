"""Live mail: the SSE stream while mail arrives, resuming with Last-Event-ID, and the long-poll wait."""

from __future__ import annotations

import asyncio
import json
import smtplib
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from commune.types import Message

from backend.api.live import _frame
from backend.events import Event
from tests.conftest import start_server
from tests.mailtools import make_inbox
from tests.waiting import wait_until


def frames(response: httpx.Response) -> Iterator[dict]:
    """Parse a text/event-stream into frames: `{"id", "event", "data"}`, or `{"comment"}` lines."""
    frame: dict = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line == "":
            if "event" in frame or "data" in frame:
                yield frame
            frame = {}
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            frame[name] = json.loads(value) if name == "data" else value


def next_events(stream: Iterator[dict], count: int) -> list[dict]:
    found = []
    for frame in stream:
        if "event" in frame:
            found.append(frame)
            if len(found) == count:
                return found
    raise AssertionError("stream ended early")


def send(api: httpx.Client, sender: dict, to: dict, subject: str) -> dict:
    response = api.post("/v1/messages/send", json={"inboxId": sender["id"], "to": [to["address"]],
                                                   "subject": subject, "text": f"body of {subject}"})
    assert response.status_code in (200, 201), response.text
    return response.json()["data"]


def smtp_deliver(running, to: dict, subject: str) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "dave@example.net", to["address"], subject
    mail.set_content(f"body of {subject}")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)


def test_stream_shows_mail_arriving_over_smtp_and_thread_changes(running, api) -> None:
    bob, carol = make_inbox(api), make_inbox(api)
    with api.stream("GET", "/v1/events", params={"inbox_id": bob["id"]}, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = frames(response)
        smtp_deliver(running, carol, "not for bob")
        smtp_deliver(running, bob, "hello bob")
        received, updated = next_events(stream, 2)
        assert received["event"] == "message.received"
        message = Message.model_validate(received["data"]["message"])
        assert message.metadata.subject == "hello bob" and message.direction == "inbound"
        assert received["data"]["inbox_id"] == bob["id"]
        assert updated["event"] == "thread.updated" and updated["data"]["thread_id"] == message.thread_id

        api.put(f"/v1/threads/{message.thread_id}/status", json={"status": "closed"})
        (closed,) = next_events(stream, 1)
        assert closed["event"] == "thread.updated" and closed["data"]["status"] == "closed"
        assert int(received["id"]) < int(updated["id"]) < int(closed["id"])


def test_last_event_id_resumes_where_the_client_left_off(api) -> None:
    alice, bob = make_inbox(api), make_inbox(api)
    params = {"inbox_id": bob["id"], "types": "message.received"}
    with api.stream("GET", "/v1/events", params=params, timeout=10) as response:
        send(api, alice, bob, "first")
        (first,) = next_events(frames(response), 1)
    send(api, alice, bob, "second")
    send(api, alice, bob, "third")
    headers = {"Last-Event-ID": first["id"]}
    with api.stream("GET", "/v1/events", params=params, headers=headers, timeout=10) as response:
        missed = next_events(frames(response), 2)
    assert [m["data"]["message"]["metadata"]["subject"] for m in missed] == ["second", "third"]
    with api.stream("GET", "/v1/events", params=params, headers={"Last-Event-ID": "1"}, timeout=10) as response:
        (stale,) = next_events(frames(response), 1)
    assert stale["event"] == "resync"  # an id from an earlier run: the client must reload
    bad = api.get("/v1/events", params=params, headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


def test_streams_are_confined_to_the_org_and_the_keys_scopes(running, api) -> None:
    alice, bob = make_inbox(api), make_inbox(api)
    with running.client(running.new_key()) as stranger:
        assert stranger.get("/v1/events", params={"inbox_id": bob["id"]}).status_code == 404
        own = make_inbox(stranger)
        with stranger.stream("GET", "/v1/events", timeout=10) as response:
            send(api, alice, bob, "private")
            send(stranger, own, own, "mine")
            first = next_events(frames(response), 1)[0]
        assert first["data"]["inbox_id"] == own["id"]
        org_id = stranger.get("/v1/agent/org").json()["id"]
        bus = running.server.services.events
        open_streams = wait_until(lambda: running.run(lambda: sum(s.org_id == org_id for s in bus.subscriptions)),
                                  lambda n: n == 0)
        assert open_streams == 0, "a closed stream must drop its subscription"

    with running.client(running.new_key(["threads:read"], org=None)) as threads_only:
        assert threads_only.get("/v1/events", params={"types": "message.received"}).status_code == 403
    with running.client(running.new_key(["messages:read"])) as no_threads:
        assert no_threads.get("/v1/events").status_code == 403
    assert api.get("/v1/events", params={"types": "mail.exploded"}).status_code == 400


def test_heartbeats_keep_an_idle_stream_alive_and_stopping_the_server_ends_it(tmp_path, dns_server, engine) -> None:
    server = start_server(tmp_path, dns_server, sse_heartbeat=0.05, workers_enabled=False, engine=engine)
    try:
        with server.client() as client, client.stream("GET", "/v1/events", timeout=10) as response:
            stream = frames(response)
            comments = []
            for frame in stream:
                comments.append(frame.get("comment"))
                if comments.count("heartbeat") == 2:
                    break
            server.stop()
            rest = list(stream)  # the stream ends cleanly instead of holding the shutdown open
    finally:
        server.stop()
    assert comments[0] == "connected" and comments.count("heartbeat") == 2
    assert all("event" not in frame for frame in rest)


def test_wait_returns_newer_mail_at_once_or_when_it_arrives(api) -> None:
    alice, bob = make_inbox(api), make_inbox(api)
    send(api, alice, bob, "already here")
    arrived = api.get("/v1/messages/wait", params={"inbox_id": bob["id"], "after": "2000-01-01T00:00:00Z",
                                                   "timeout": 5}).json()
    assert [m["metadata"]["subject"] for m in arrived["data"]] == ["already here"]
    Message.model_validate(arrived["data"][0])
    after = arrived["after"]
    assert after == arrived["data"][0]["id"]

    result: dict = {}
    waiter = threading.Thread(target=lambda: result.update(api.get(
        "/v1/messages/wait", params={"inbox_id": bob["id"], "after": after, "timeout": 20}, timeout=30).json()))
    waiter.start()
    send(api, alice, bob, "new arrival")
    waiter.join(30)
    assert [m["metadata"]["subject"] for m in result["data"]] == ["new arrival"]

    empty = api.get("/v1/messages/wait", params={"inbox_id": bob["id"], "after": result["after"], "timeout": 0})
    assert empty.status_code == 200 and empty.json()["data"] == []
    sent = api.get("/v1/messages/wait", params={"inbox_id": alice["id"], "after": "2000-01-01T00:00:00Z",
                                                "direction": "all", "timeout": 0}).json()["data"]
    assert {m["direction"] for m in sent} == {"outbound"} and len(sent) == 2


@pytest.mark.parametrize("params, status, field", [
    ({}, 400, "inbox_id"),
    ({"timeout": "soon"}, 400, "timeout"),
    ({"timeout": "61"}, 400, "timeout"),
    ({"after": "not-a-date"}, 400, "after"),
    ({"after": "msg_0000"}, 404, "after"),
    ({"direction": "sideways"}, 400, "direction"),
])
def test_wait_rejects_bad_arguments(api, params, status, field) -> None:
    inbox = make_inbox(api)
    query = {"inbox_id": inbox["id"], "timeout": 0, **params} if params else {}
    response = api.get("/v1/messages/wait", params=query)
    assert response.status_code == status and field in response.json()["error"]


def test_wait_on_another_orgs_inbox_is_404(running, api) -> None:
    inbox = make_inbox(api)
    with running.client(running.new_key()) as stranger:
        assert stranger.get("/v1/messages/wait", params={"inbox_id": inbox["id"], "timeout": 0}).status_code == 404


def test_an_sse_frame_is_shared_by_event_object_never_by_id_alone() -> None:
    """Streams share one encoding of each event; an event with the same id from another bus (another
    server in the process) gets its own."""
    first = Event(7, "thread.updated", "org_a", {"thread_id": "thread_a"})
    again = Event(7, "thread.updated", "org_b", {"thread_id": "thread_b"})

    async def frames() -> list[bytes]:
        return [await _frame(None, event) for event in (first, first, again)]  # type: ignore[arg-type]

    shared, repeated, other = asyncio.run(frames())
    assert shared is repeated and b"thread_a" in shared
    assert b"thread_b" in other and b"thread_a" not in other
