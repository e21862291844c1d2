"""Two server nodes on one PostgreSQL database, each with its own data directory: what one node takes in,
the other serves at once; live events cross between them; queued work is done once, also when a node is
SIGKILLed in the middle of it; a key's rate limit holds across both; a deletion on one leaves nothing
on the other.

Most tests run both nodes in this process (`ServerThread`s); the crash tests run `commune-server serve`
processes, so that a SIGKILL takes a node down mid-work. Figures (latencies, duplicates at a kill) are
printed; the bounds asserted are the issue's.
"""

from __future__ import annotations

import email
import hashlib
import json
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.server_process import ServerProcess
from tests.smtp_sink import SmtpSink, wait_until
from tests.webhook_receiver import WebhookReceiver

PARTNER = "partner-nodes.test"
LEASE = 2.0


class Pair:
    """Nodes `a` and `b` on one database; `a` started first and holds the admin key."""

    def __init__(self, a: Running, b: Running) -> None:
        self.a, self.b = a, b

    def clients(self, key: str | None = None) -> tuple[httpx.Client, httpx.Client]:
        key = key or self.a.admin_key
        return self.a.client(key), self.b.client(key)

    def stop(self) -> None:
        self.b.stop()
        self.a.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, dns_server, postgres_cluster, smtp_sink: SmtpSink
         ) -> Iterator[Pair]:
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    url = postgres_cluster.new_database()
    settings = {"database_url": url, "relay": f"127.0.0.1:{smtp_sink.port}", "lease_seconds": LEASE,
                "delivery_backoff": 0.1, "delivery_backoff_max": 0.2}
    a = start_server(tmp_path_factory.mktemp("node-a"), dns_server, **settings)
    b = start_server(tmp_path_factory.mktemp("node-b"), dns_server, **settings)
    made = Pair(a, b)
    yield made
    made.stop()


def smtp_deliver(port: int, recipient: str, subject: str, attachment: bytes | None = None, body: str = "") -> str:
    """One message over SMTP to a node; returns its Message-ID once the node answered 250."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "sender@example.net", recipient, subject
    message["Message-ID"] = f"<{hashlib.sha1(subject.encode()).hexdigest()}@example.net>"
    message.set_content(f"{subject}\n{body}")
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="data.bin")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(message)
    return message["Message-ID"]


def messages(api: httpx.Client, inbox_id: str) -> list[dict]:
    """Every message of the inbox, newest first (all pages)."""
    found, cursor = [], None
    while True:
        params = {"inbox_id": inbox_id, "limit": 100, **({"cursor": cursor} if cursor else {})}
        response = api.get("/v1/messages", params=params)
        assert response.status_code == 200, response.text
        found.extend(response.json()["data"])
        cursor = response.json()["next_cursor"]
        if not response.json()["has_more"]:
            return found


def arrived(sink: SmtpSink, prefix: str) -> list[email.message.EmailMessage]:
    parsed = (email.message_from_bytes(r.data, policy=policy.default) for r in list(sink.received))
    return [m for m in parsed if str(m["Subject"]).startswith(prefix)]


def test_nodes_share_one_secret_and_one_admin_key(pair: Pair) -> None:
    a, b = pair.a.server.services, pair.b.server.services
    assert a.node_id != b.node_id
    assert a.signer.sign("test", "x", 1) == b.signer.sign("test", "x", 1), "one server secret for both"
    assert b.admin_key is None and not (b.settings.data_dir / "admin.key").exists()
    assert not (b.settings.data_dir / "server.secret").exists()
    admins = a.database.query("SELECT COUNT(*) FROM api_keys WHERE name = 'admin'")[0][0]
    assert admins == 1


def test_mail_taken_in_by_a_is_readable_through_b_at_once(pair: Pair) -> None:
    api_a, api_b = pair.clients()
    with api_a, api_b:
        inbox = make_inbox(api_a)
        content = bytes(range(256)) * 40
        message_id = smtp_deliver(pair.a.server.smtp_port, inbox["address"], "arrived on a", content)
        (found,) = messages(api_b, inbox["id"])  # no wait: the 250 came after the commit
        assert found["subject"] == "arrived on a" and found["metadata"]["message_id"] == message_id
        (attachment_id,) = found["attachments"]
        url = api_a.get(f"/v1/attachments/{attachment_id}/url").json()["data"]["url"]
        path = url[url.index("/v1/"):]
        download = httpx.get(pair.b.url + path)
        assert download.status_code == 200 and download.content == content, "blobs and signed links are shared"


def test_a_message_delivered_to_both_nodes_at_once_is_stored_once(pair: Pair) -> None:
    """A sender retrying through another MX while the first node is still storing: one copy, and both
    answers are 250 (the second node waits for the first one's commit and finds the message)."""
    with pair.a.client() as api:
        inbox = make_inbox(api)
        answers: list[str] = []

        def deliver(node: Running, subject: str) -> None:
            try:
                smtp_deliver(node.server.smtp_port, inbox["address"], subject)
                answers.append("250")
            except smtplib.SMTPResponseException as exc:
                answers.append(str(exc.smtp_code))

        for n in range(20):
            both = [threading.Thread(target=deliver, args=(node, f"twice {n}")) for node in (pair.a, pair.b)]
            for thread in both:
                thread.start()
            for thread in both:
                thread.join()
        stored = Counter(m["subject"] for m in messages(api, inbox["id"]))
    print(f"\nthe same message to both nodes at once, 20 times: answers {Counter(answers)}")
    assert stored == {f"twice {n}": 1 for n in range(20)}
    assert answers == ["250"] * 40


def test_a_key_revoked_on_a_is_refused_by_b_at_once(pair: Pair) -> None:
    key = pair.a.new_key(["read"], org="revoking-org")
    admin_key = pair.a.new_key(["admin"], org="revoking-org")
    with pair.b.client(key) as on_b, pair.a.client(admin_key) as admin_a:
        assert on_b.get("/v1/inboxes").status_code == 200  # b has the key in its cache now
        (record,) = [k for k in admin_a.get("/v1/agent/api-keys").json()["data"] if key.startswith(k["keyPrefix"]) and k["scopes"] == ["read"]]
        assert admin_a.delete(f"/v1/agent/api-keys/{record['id']}").status_code == 200
        revoked = time.monotonic()
        refused = wait_until(lambda: on_b.get("/v1/inboxes").status_code == 401 and time.monotonic(), timeout=5)
    print(f"\nb refused a key revoked on a after {(refused - revoked) * 1000:.0f} ms (its key cache holds 5 s)")
    assert refused - revoked < 1.0


def test_sse_and_wait_on_b_see_mail_that_arrived_on_a(pair: Pair) -> None:
    api_a, api_b = pair.clients()
    with api_a, api_b:
        inbox = make_inbox(api_a)
        seen: dict[str, float] = {}
        streaming = threading.Event()

        def stream() -> None:
            params = {"inbox_id": inbox["id"], "types": "message.received"}
            with api_b.stream("GET", "/v1/events", params=params, timeout=10) as response:
                for line in response.iter_lines():
                    streaming.set()
                    if line.startswith("data: ") and "live across nodes" in line:
                        # The second message's event is larger than a notification: it comes by reference.
                        seen["sse large" if "x" * 10_000 in line else "sse"] = time.monotonic()
                        if len(seen) >= 2 and "sse large" in seen:
                            return

        def wait() -> None:
            answer = api_b.get("/v1/messages/wait", params={"inbox_id": inbox["id"], "timeout": 10}, timeout=15)
            if answer.status_code == 200 and answer.json()["data"]:
                seen["wait"] = time.monotonic()

        threads = [threading.Thread(target=stream), threading.Thread(target=wait)]
        for thread in threads:
            thread.start()
        assert streaming.wait(5)
        time.sleep(0.3)  # the wait call is parked on b
        smtp_deliver(pair.a.server.smtp_port, inbox["address"], "live across nodes")
        stored = time.monotonic()
        threads[1].join(15)
        smtp_deliver(pair.a.server.smtp_port, inbox["address"], "live across nodes, large", body="x" * 20_000)
        stored_large = time.monotonic()
        threads[0].join(15)
    latency = {name: round((at - (stored_large if "large" in name else stored)) * 1000)
               for name, at in seen.items()}
    print(f"\nb saw mail stored on a after (ms): {latency}")
    assert set(latency) == {"sse", "sse large", "wait"}
    assert max(latency.values()) < 500


def test_1000_sends_spread_over_both_nodes_reach_the_relay_once_each(pair: Pair, smtp_sink: SmtpSink) -> None:
    api_a, api_b = pair.clients()
    with api_a, api_b:
        inbox = make_inbox(api_a)
    subjects = [f"spread {n}" for n in range(1000)]

    def send(part: list[str], node: Running) -> None:
        with node.client(pair.a.admin_key) as api:
            for subject in part:
                response = api.post("/v1/messages/send", json={
                    "inbox_id": inbox["id"], "to": f"{subject.replace(' ', '-')}@{PARTNER}", "subject": subject,
                    "text": "once"})
                assert response.status_code == 200, response.text

    threads = [threading.Thread(target=send, args=(subjects[n::16], pair.a if n % 2 else pair.b)) for n in range(16)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = time.monotonic() - started

    def subjects_arrived() -> Counter[str]:
        return Counter(str(m["Subject"]) for m in arrived(smtp_sink, "spread "))

    wait_until(lambda: len(subjects_arrived()) >= 1000, timeout=60)
    delivered = time.monotonic() - started
    time.sleep(0.5)  # a row two nodes had claimed at once would have arrived twice by now
    counts = subjects_arrived()
    print(f"\n1000 sends over two nodes: accepted in {accepted:.1f} s, all at the relay after {delivered:.1f} s")
    assert set(counts) == set(subjects)
    assert max(counts.values()) == 1, [s for s, n in counts.items() if n > 1][:5]
    senders = {row[0] for row in pair.a.server.services.database.query(
        "SELECT lease_owner FROM outbound_queue WHERE lease_owner IS NOT NULL")}
    assert not senders, "every finished send cleared its lease"


def test_webhooks_outcomes_and_scheduled_sends_are_done_once_across_nodes(pair: Pair, smtp_sink: SmtpSink) -> None:
    hook = WebhookReceiver()
    api_a, api_b = pair.clients()
    try:
        with api_a, api_b:
            inbox = make_inbox(api_a, webhook={"endpoint": hook.url, "events": ["email.received", "delivery"]})
            send_at = datetime.fromtimestamp(time.time() + 1.5, UTC).isoformat()
            for n in range(20):
                api = api_a if n % 2 else api_b
                response = api.post("/v1/messages/send", json={
                    "inbox_id": inbox["id"], "to": f"later-{n}@{PARTNER}", "subject": f"later {n}", "text": "x",
                    "send_at": send_at})
                assert response.status_code == 202, response.text
            for n in range(20):
                node = pair.a if n % 2 else pair.b
                smtp_deliver(node.server.smtp_port, inbox["address"], f"hooked {n}")
            wait_until(lambda: len(arrived(smtp_sink, "later ")) >= 20, timeout=20)
            # 20 inbound webhooks, 20 `sent` outcomes (no `queued`: the inbox asked for outcomes only).
            hook.wait_for(40, timeout=20)
            time.sleep(0.5)  # a second claim of anything would show by now
        assert Counter(str(m["Subject"]) for m in arrived(smtp_sink, "later ")) == {f"later {n}": 1 for n in range(20)}
        ids = Counter(r.headers["x-commune-delivery-id"] for r in hook.requests)
        assert len(ids) == 40 and max(ids.values()) == 1, "each webhook delivery was posted once"
        events = Counter(json.loads(r.body).get("type") or json.loads(r.body)["event"] for r in hook.requests)
        assert events == {"email.received": 20, "email.sent": 20}, events
    finally:
        hook.close()


def test_a_keys_rate_limit_holds_across_both_nodes(tmp_path: Path, dns_server, postgres_cluster) -> None:
    rate = 20.0
    url = postgres_cluster.new_database()
    a = start_server(tmp_path / "a", dns_server, database_url=url, rate_limit=rate)
    b = start_server(tmp_path / "b", dns_server, database_url=url, rate_limit=rate)
    try:
        key = a.new_key(["read"])
        allowed: list[float] = []
        refused = 0
        lock = threading.Lock()
        until = time.monotonic() + 2.0

        def hammer(node: Running) -> None:
            nonlocal refused
            with node.client(key) as api:
                while time.monotonic() < until:
                    status = api.get("/v1/inboxes").status_code
                    with lock:
                        if status == 200:
                            allowed.append(time.monotonic())
                        else:
                            assert status == 429
                            refused += 1

        threads = [threading.Thread(target=hammer, args=(node,)) for node in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = max(allowed) - min(allowed)
        expected = 2 * rate + rate * elapsed  # a full bucket (burst = 2 × rate), then `rate` a second
        print(f"\nrate limit over two nodes: {len(allowed)} allowed, {refused} refused in {elapsed:.2f} s,"
              f" one node alone would allow {expected:.0f}")
        assert refused > len(allowed), "the test must push well past the limit"
        assert abs(len(allowed) - expected) <= 0.1 * expected
    finally:
        b.stop()
        a.stop()


def test_a_deletion_confirmed_on_a_leaves_nothing_readable_on_b(pair: Pair) -> None:
    key = pair.a.new_key(["read", "write", "data:delete"])
    api_a, api_b = pair.clients(key)
    with api_a, api_b:
        inbox = make_inbox(api_a)
        smtp_deliver(pair.a.server.smtp_port, inbox["address"], "to be deleted", b"secret bytes" * 100)
        (message,) = messages(api_b, inbox["id"])
        (attachment_id,) = message["attachments"]
        url = api_b.get(f"/v1/attachments/{attachment_id}/url").json()["data"]["url"]
        search = {"q": "deleted", "inbox_id": inbox["id"]}
        assert len(api_b.get("/v1/search/threads", params=search).json()["data"]) == 1
        # Requested on b, confirmed on a: the token is signed with the secret both share.
        created = api_b.post("/v1/data/deletion-request", json={"scope": "messages", "inbox_id": inbox["id"]})
        assert created.status_code == 201, created.text
        done = api_a.post(f"/v1/data/deletion-request/{created.json()['id']}/confirm",
                          json={"confirmation_token": created.json()["confirmation_token"]})
        assert done.status_code == 200 and done.json()["status"] == "completed", done.text
        assert messages(api_b, inbox["id"]) == []
        assert api_b.get(f"/v1/messages/{message['id']}").status_code == 404
        assert api_b.get(f"/v1/threads/{message['thread_id']}").status_code == 404
        assert api_b.get(f"/v1/attachments/{attachment_id}").status_code == 404
        assert httpx.get(pair.b.url + url[url.index("/v1/"):]).status_code == 404
        found = api_b.get("/v1/search/threads", params=search)
        assert found.status_code == 200 and found.json()["data"] == []


# A node SIGKILLed mid-work --------------------------------------------------------------------------
CONCURRENCY = 5


@pytest.fixture
def slow_sink() -> Iterator[SmtpSink]:
    """A relay that takes 300 ms to accept each message: slower than the burst comes in, so both nodes
    have all their sends in flight when one dies."""
    sink = SmtpSink().start()
    sink.handler.delay = 0.3
    yield sink
    sink.stop()


def node_process(folder: Path, name: str, url: str, dns_server, sink: SmtpSink) -> ServerProcess:
    dns_server.publish(PARTNER, "MX", f"10 mx.{PARTNER}.")
    return ServerProcess(folder, "--database", url, "--dns-servers", dns_server.address,
                         "--relay", f"127.0.0.1:{sink.port}", env={
                             "COMMUNE_NODE_ID": name, "COMMUNE_LEASE_SECONDS": str(LEASE),
                             "COMMUNE_DELIVERY_CONCURRENCY": str(CONCURRENCY),
                             "COMMUNE_DELIVERY_BACKOFF": "0.1", "COMMUNE_DELIVERY_BACKOFF_MAX": "0.2"})


def test_sigkill_of_a_mid_burst_loses_no_acknowledged_message_and_b_takes_over(
        tmp_path: Path, dns_server, postgres_cluster, slow_sink: SmtpSink) -> None:
    url = postgres_cluster.new_database()
    a = node_process(tmp_path / "a", "node-a", url, dns_server, slow_sink).start()
    b = node_process(tmp_path / "b", "node-b", url, dns_server, slow_sink).start()
    try:
        key = a.admin_key
        with a.client(key) as api:
            outbox, inbox = make_inbox(api), make_inbox(api)
        sent: list[str] = []  # sends a answered 200 for
        stored: list[str] = []  # messages a's SMTP answered 250 for

        def send_burst(n: int) -> None:
            with a.client(key, timeout=10) as api:
                for i in range(10_000):
                    subject = f"burst {n}-{i}"
                    try:
                        response = api.post("/v1/messages/send", json={
                            "inbox_id": outbox["id"], "to": f"b{n}-{i}@{PARTNER}", "subject": subject, "text": "x"})
                    except httpx.HTTPError:
                        return
                    assert response.status_code == 200, response.text
                    sent.append(subject)

        def smtp_burst(n: int) -> None:
            for i in range(10_000):
                subject = f"ingest {n}-{i}"
                try:
                    smtp_deliver(a.smtp_port, inbox["address"], subject)
                except (OSError, smtplib.SMTPException):
                    return
                stored.append(subject)

        threads = [threading.Thread(target=send_burst, args=(n,)) for n in range(3)]
        threads += [threading.Thread(target=smtp_burst, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(slow_sink.received) >= 40 and len(stored) >= 40, timeout=30)
        a.signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()
        leased = leased_by(url, "node-a")  # read before b may take them over
        for thread in threads:
            thread.join(15)
        # b sends what a acknowledged: rows nobody held at once, a's leased rows once their lease ran out.
        wait_until(lambda: {str(m["Subject"]) for m in arrived(slow_sink, "burst ")} >= set(sent), timeout=30)
        taken_over = time.monotonic() - killed_at
        # A second copy comes when a dead node's lease has run out: it would have arrived by now.
        time.sleep(max(0.0, killed_at + LEASE + 1.0 - time.monotonic()))
        copies: dict[str, list[str]] = {}
        for message in arrived(slow_sink, "burst "):
            copies.setdefault(str(message["Subject"]), []).append(str(message["Message-ID"]))
        twice = {subject: ids for subject, ids in copies.items() if len(ids) > 1}
        print(f"\nSIGKILL mid-burst: {len(sent)} sends acknowledged, {len(leased)} rows leased by the dead node,"
              f" all at the relay {taken_over:.1f} s after the kill; sent twice: {len(twice)}"
              f" (bound: {CONCURRENCY} in flight); {len(stored)} SMTP messages acknowledged")
        assert leased, "the kill was meant to catch sends in flight"
        assert all(len(set(ids)) == 1 for ids in twice.values()), "a second copy has the same Message-ID"
        assert len(twice) <= CONCURRENCY
        with b.client(key) as api:
            ingested = Counter(m["subject"] for m in messages(api, inbox["id"]))
        assert set(stored) <= set(ingested), "every message a acknowledged is readable on b"
        assert max(ingested.values()) == 1, "SMTP ingest stored nothing twice"
    finally:
        a.stop()
        b.stop()


def leased_by(url: str, node: str) -> list[str]:
    """Queue rows still waiting under `node`'s lease."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM outbound_queue WHERE lease_owner = %s AND status IN ('queued', 'deferred')",
                            (node,)).fetchall()
    return [row[0] for row in rows]
