"""Live fan-out: many streams and waiters on one inbox, events written straight to streams that keep up,
and the queue's rules (order, overflow, resync) for those that do not."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx

from backend.events import EventBus
from tests.mailtools import make_inbox
from tests.test_live import frames, next_events, smtp_deliver
from tests.waiting import wait_until

STREAMS = 12
WAITERS = 6


def test_every_stream_gets_every_event_in_order_and_waiters_get_one_answer(running, api) -> None:
    inbox = make_inbox(api)
    params = {"inbox_id": inbox["id"]}
    subjects = [f"fan-out {n}" for n in range(3)]
    received: list[list[dict]] = [[] for _ in range(STREAMS)]
    answers: list[httpx.Response] = []
    ready = threading.Barrier(STREAMS + 1)

    def stream(number: int) -> None:
        with api.stream("GET", "/v1/events", params=params, timeout=30) as response:
            events = frames(response)
            assert next(events) == {"comment": "connected"}
            ready.wait()
            # Each message is announced by message.received and then thread.updated.
            received[number] = next_events(events, 2 * len(subjects))

    def wait(after: str) -> None:
        answers.append(api.get("/v1/messages/wait", params={**params, "after": after, "timeout": 30}, timeout=40))

    readers = [threading.Thread(target=stream, args=(n,)) for n in range(STREAMS)]
    for reader in readers:
        reader.start()
    ready.wait(30)
    waiters = [threading.Thread(target=wait, args=("2000-01-01T00:00:00Z",)) for _ in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    for subject in subjects:
        smtp_deliver(running, inbox, subject)
    for thread in readers + waiters:
        thread.join(60)

    for events in received:
        assert [e["event"] for e in events] == ["message.received", "thread.updated"] * len(subjects)
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        got = [e["data"]["message"]["metadata"]["subject"] for e in events if e["event"] == "message.received"]
        assert got == subjects
        assert all("codes" in e["data"]["message"]["extracted"] for e in events if e["event"] == "message.received")
    assert [e["id"] for e in received[0]] == [e["id"] for e in received[-1]], "one id per event on every stream"

    assert len(answers) == WAITERS and all(a.status_code == 200 for a in answers)
    for answer in answers:
        data = answer.json()["data"]
        assert data and data[0]["metadata"]["subject"] == subjects[0]
        assert answer.json()["after"] == data[-1]["id"] and "extracted" in data[0]
    first = answers[0].json()["data"][0]
    database = running.server.services.database
    # The streams computed the codes and links once and stored them for later reads.
    stored = wait_until(lambda: running.run(lambda: database.run(
        database.one, "SELECT extracted FROM messages WHERE id = ?", (first["id"],))),
        lambda row: row is not None and row[0] is not None)
    assert json.loads(stored[0]) == first["extracted"]


def _stalled_stream(running, key: str, inbox_id: str) -> tuple[socket.socket, bytes]:
    """A `GET /v1/events` whose client reads nothing more once the stream is live (a small receive
    window, soon full), and what it read until then."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", running.server.port))
    sock.sendall(f"GET /v1/events?inbox_id={inbox_id} HTTP/1.1\r\nHost: test\r\n"
                 f"Authorization: Bearer {key}\r\n\r\n".encode())
    sock.settimeout(10)
    head = b""
    while b": connected" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the stream ended before it was live"
        head += chunk
    return sock, head


def _read_until_quiet(sock: socket.socket) -> bytes:
    sock.settimeout(2)
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def test_a_stream_that_stops_reading_is_told_to_resync_and_holds_up_no_one(running) -> None:
    key = running.new_key()
    with running.client(key) as api:
        inbox = make_inbox(api)
        org_id = api.get("/v1/agent/org").json()["id"]
    bus: EventBus = running.server.services.events
    stalled, head = _stalled_stream(running, key, inbox["id"])
    total, filler = 2000, "x" * 8000
    seen: list[int] = []

    def read_all() -> None:
        with running.client(key) as client, client.stream(
                "GET", "/v1/events", params={"inbox_id": inbox["id"]}, timeout=30) as response:
            events = frames(response)
            assert next(events) == {"comment": "connected"}
            started.set()
            for frame in events:
                if "event" in frame:
                    assert frame["event"] == "thread.updated", frame
                    seen.append(frame["data"]["n"])
                    if len(seen) == total:
                        return

    started = threading.Event()
    reader = threading.Thread(target=read_all)
    reader.start()
    assert started.wait(10)

    async def publish() -> None:
        for n in range(total):
            bus.publish("thread.updated", org_id, {"n": n, "filler": filler}, inbox["id"])
            if n % 50 == 49:
                # In bursts, each once the reading stream has the last: it never falls behind, however
                # slowly this machine runs it, while the stalled one falls further behind with every burst.
                while len(seen) <= n and reader.is_alive():
                    await asyncio.sleep(0.005)

    running.run(publish)
    reader.join(60)
    assert seen == list(range(total)), "the reading stream got every event, in order"

    text = (head + _read_until_quiet(stalled)).decode(errors="replace")
    stalled.close()
    assert text.startswith("HTTP/1.1 200")
    resync = text.find('event: resync\ndata: {"reason":"overflow"}')
    assert resync > 0, "the stalled stream is told it missed events"
    numbers = [json.loads(line[6:])["n"] for line in text.split("\n") if line.startswith("data: {\"n\"")]
    # What it was sent arrived in order, without gaps; what its full queue had no room for was left out.
    assert numbers == list(range(len(numbers))) and len(numbers) < total


def test_a_sink_takes_batches_until_it_declines_and_the_queue_then_keeps_the_order() -> None:
    bus = EventBus()
    taken: list[list[str]] = []
    accepting = True

    def sink(events) -> bool:
        if accepting:
            taken.append([e.type for e in events])
        return accepting

    async def run() -> tuple[list[str], list[str]]:
        nonlocal accepting
        pushed = bus.subscribe("org")
        pushed.sink = sink
        queued = bus.subscribe("org")
        bus.publish("a", "org", {})
        bus.publish("b", "org", {})  # published before the loop runs: handed over with "a", at once
        await asyncio.sleep(0)
        accepting = False
        bus.publish("c", "org", {})
        await asyncio.sleep(0)
        accepting = True
        bus.publish("d", "org", {})  # "c" is still queued: "d" must not overtake it
        bus.publish("other", "another org", {})
        await asyncio.sleep(0)
        return ([pushed.queue.get_nowait().type for _ in range(pushed.queue.qsize())],
                [queued.queue.get_nowait().type for _ in range(queued.queue.qsize())])

    in_queue, everything = asyncio.run(run())
    assert taken == [["a", "b"]]
    assert in_queue == ["c", "d"]
    assert everything == ["a", "b", "c", "d"]


def test_events_published_from_another_thread_reach_streams_on_the_loop() -> None:
    bus = EventBus()

    async def run() -> list[int]:
        subs = [bus.subscribe("org", maxsize=50) for _ in range(3)]
        publisher = threading.Thread(target=lambda: [bus.publish("t", "org", {"n": n}) for n in range(40)])
        publisher.start()
        await asyncio.to_thread(publisher.join)
        got = []
        for sub in subs:
            got.append([(await asyncio.wait_for(sub.queue.get(), 5)).data["n"] for _ in range(40)])
        return got

    assert asyncio.run(run()) == [list(range(40))] * 3
