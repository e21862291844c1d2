"""`commune-server copy`: a SQLite install moved into PostgreSQL serves the same mail; a copy stopped midway
(Ctrl-C, SIGKILL) continues where it stopped; counts that differ fail the command."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import psycopg
import pytest

from backend.copy.progress import Progress
from backend.store.blobs import BlobStore
from bench.seed import seed
from tests.conftest import start_server
from tests.mailtools import make_inbox
from tests.smtp_sink import SmtpSink
from tests.waiting import wait_until
from tests.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
MESSAGES, BLOBS = 4500, 600


def copy_command(data_dir: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "backend", "copy", "--from", str(data_dir), "--to", url]


def run_copy(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(copy_command(data_dir, url), check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def sql(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def smtp_mail(port: int, recipient: str, subject: str, body: str, attachment: bytes | None = None) -> None:
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.net>"
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                               filename="engine.bin")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


def snapshot(client: httpx.Client, inboxes: list[dict]) -> dict:
    """What a client reads back: every thread list, thread, message and attachment; search; deliveries."""
    seen: dict = {}
    for inbox in inboxes:
        threads = client.get("/v1/threads", params={"inbox_id": inbox["id"], "limit": 100}).json()
        seen[f"threads {inbox['address']}"] = threads
        for thread in threads["data"]:
            messages = client.get(f"/v1/threads/{thread['thread_id']}/messages").json()
            seen[f"thread {thread['thread_id']}"] = messages
            for message in messages["data"]:
                for attachment in message.get("attachments") or []:
                    link = client.get(f"/v1/attachments/{attachment}/url").json()["data"]["url"]
                    got = httpx.get(link.replace(link.split("/v1/")[0], str(client.base_url).rstrip("/")))
                    seen[f"attachment {attachment}"] = [got.status_code, hashlib.sha256(got.content).hexdigest()]
        for word in ("difference", "engine", "差分机"):
            seen[f"search {word} {inbox['id']}"] = client.get(
                "/v1/search/threads", params={"q": word, "inbox_id": inbox["id"]}).json()
        seen[f"webhooks {inbox['id']}"] = client.get(
            "/v1/webhooks/deliveries", params={"inbox_id": inbox["id"]}).json()
    seen["inboxes"] = client.get("/v1/inboxes").json()
    seen["contacts"] = client.get("/v1/contacts").json()
    seen["delivery events"] = client.get("/v1/delivery/events").json()
    return seen


@pytest.fixture(scope="module")
def install(tmp_path_factory, dns_server, smtp_sink: SmtpSink) -> Iterator[dict]:
    """A SQLite install made by a real server (inboxes, SMTP mail with attachments, labels, sends to a
    relay and between inboxes, a webhook, keys), then stopped; with what its API answered."""
    data_dir = tmp_path_factory.mktemp("sqlite-install")
    receiver = WebhookReceiver()
    server = start_server(data_dir, dns_server, relay=f"127.0.0.1:{smtp_sink.port}")
    try:
        key = server.new_key(["read", "write"])
        with server.client(key) as api:
            hooked = make_inbox(api, webhook={"endpoint": receiver.url})
            plain = make_inbox(api)
            port = server.server.smtp_port
            smtp_mail(port, hooked["address"], "The difference engine", "Plans attached.", b"\x00\x01" * 3000)
            smtp_mail(port, hooked["address"], "Re: The difference engine", "Second thoughts on the engine.")
            smtp_mail(port, plain["address"], "差分机 notes", "The 差分机 runs again.", b"gears" * 500)
            receiver.wait_for(2)
            thread = wait_until(lambda: api.get("/v1/threads", params={"inbox_id": hooked["id"]}).json()["data"],
                                lambda found: len(found) == 2)[0]
            assert api.patch(f"/v1/threads/{thread['thread_id']}",
                             json={"add_labels": ["flagged", "project-x"]}).status_code == 200
            uploaded = api.post("/v1/attachments/upload", json={
                "content": base64.b64encode(b"notes, kept").decode(), "filename": "notes.txt",
                "mime_type": "text/plain"}).json()["data"]
            sent = api.post("/v1/messages/send", json={
                "inbox_id": plain["id"], "to": [hooked["address"], "babbage@example.org"],
                "subject": "Engine parts", "text": "The parts list.\u0000",
                "attachments": [uploaded["attachment_id"]]})
            assert sent.status_code == 200, sent.text
            # Settled before the snapshot: no webhook or delivery left for the next server to retry.
            receiver.wait_for(3)
            wait_until(lambda: api.get("/v1/delivery/events", params={"event_type": "sent"}).json()["data"],
                       lambda events: any(e["recipient"] == "babbage@example.org" for e in events))
            link = api.get(f"/v1/attachments/{uploaded['attachment_id']}/url",
                           params={"expires_in": 3600}).json()["data"]["url"]
            inboxes = [hooked, plain]
            seen = snapshot(api, inboxes)
        with server.client() as admin:
            audit = admin.get("/v1/audit-logs").json()["data"]
        admin_key = server.admin_key
    finally:
        server.stop()
        receiver.close()
    yield {"data_dir": data_dir, "key": key, "admin_key": admin_key, "inboxes": inboxes, "seen": seen,
           "audit": audit, "link": link}


def test_a_copied_install_serves_the_same_mail_on_postgresql(install, postgres_cluster, dns_server, tmp_path) -> None:
    url = postgres_cluster.new_empty_database()
    done = run_copy(install["data_dir"], url)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "MISMATCH" not in done.stdout and "messages" in done.stdout
    assert "messages: 5/5" in done.stderr and "blobs:" in done.stderr  # plain progress lines, not a TTY

    server = start_server(tmp_path / "node", dns_server, database_url=url)
    try:
        with server.client(install["key"]) as api:
            # PostgreSQL text cannot hold NUL: copied text has U+FFFD there, as the server stores it.
            expected = json.loads(json.dumps(install["seen"]).replace("\\u0000", "\\ufffd"))
            assert "\\u0000" in json.dumps(install["seen"])
            assert snapshot(api, install["inboxes"]) == expected
            # New mail after the copy: keys and sequences continue past the copied rows.
            smtp_mail(server.server.smtp_port, install["inboxes"][1]["address"], "After the move", "Still here.")
            threads = wait_until(lambda: api.get("/v1/threads", params={
                "inbox_id": install["inboxes"][1]["id"]}).json()["data"], lambda found: len(found) == 3)
            assert threads[0]["subject"] == "After the move"
        with server.client(install["admin_key"]) as admin:
            assert admin.get("/v1/audit-logs").json()["data"] == install["audit"]
        # The server secret moved with the data: a signed link made before the copy still downloads.
        moved_link = install["link"].replace(install["link"].split("/v1/")[0], server.url)
        assert httpx.get(moved_link).content == b"notes, kept"
    finally:
        server.stop()
    assert not (tmp_path / "node" / "admin.key").exists(), "the copied admin key serves; no second one"


def write_blob_files(data_dir: Path, org_id: str, count: int, size: int) -> None:
    blobs = BlobStore(data_dir / "blobs")
    for number in range(count):
        blobs.put(org_id, number.to_bytes(4, "big") * (size // 4), fsync=False)


def progress_of(url: str, item: str) -> tuple[int, bool] | None:
    try:
        rows = sql(url, "SELECT copied, done FROM copy_progress WHERE item = %s", (item,))
    except psycopg.Error:
        return None  # the copy has not created its record yet
    return (rows[0][0], rows[0][1]) if rows else None


def stop_midway(data_dir: Path, url: str, item: str, signum: int) -> subprocess.CompletedProcess[str]:
    """Run the copy and send it `signum` once `item` is partly copied (some batches committed)."""
    proc = subprocess.Popen(copy_command(data_dir, url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        state = progress_of(url, item)
        if state and state[0] > 0 and not state[1]:
            proc.send_signal(signum)
            break
        time.sleep(0.005)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_copy_stopped_midway_continues_and_ends_with_equal_data(tmp_path, postgres_cluster) -> None:
    # Batches of 2000 rows and of 16 MB of blobs: a few of each, so the copy can be caught midway.
    info = seed(tmp_path / "big", MESSAGES)
    write_blob_files(tmp_path / "big", info.org_id, BLOBS, 64 * 1024)
    url = postgres_cluster.new_empty_database()

    interrupted = stop_midway(tmp_path / "big", url, "messages", signal.SIGINT)
    assert interrupted.returncode == 130, interrupted.stderr
    assert "run the same command again" in interrupted.stderr
    copied, done = progress_of(url, "messages")
    assert 0 < copied < MESSAGES and not done
    assert sql(url, "SELECT count(*) FROM messages")[0][0] == copied

    killed = stop_midway(tmp_path / "big", url, "blob files", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert f"resuming at {copied:,}" in killed.stderr
    assert 0 < sql(url, "SELECT count(*) FROM blobs")[0][0] < BLOBS

    finished = run_copy(tmp_path / "big", url)
    assert finished.returncode == 0, finished.stderr + finished.stdout
    assert "MISMATCH" not in finished.stdout
    assert sql(url, "SELECT count(*), count(DISTINCT id) FROM messages")[0] == (MESSAGES, MESSAGES)
    assert sql(url, "SELECT count(*), count(DISTINCT (org_id, sha256)) FROM blobs")[0] == (BLOBS, BLOBS)
    assert sql(url, "SELECT sum(octet_length(content)) FROM blobs")[0][0] == BLOBS * 64 * 1024

    # The indexes left out while the rows went in are all back.
    indexes = "SELECT indexdef FROM pg_indexes WHERE tablename = 'messages' ORDER BY indexname"
    assert sql(url, indexes) == sql(postgres_cluster.new_database(), indexes)

    # Run again on the finished copy: nothing to do, the counts are checked again.
    again = run_copy(tmp_path / "big", url)
    assert again.returncode == 0 and "Copied and verified" in again.stdout

    # A difference between the install and the copy fails the command, naming the tables (a deleted
    # message takes its label rows with it).
    sql(url, "DELETE FROM messages WHERE seq = (SELECT max(seq) FROM messages)")
    sql(url, "DELETE FROM blobs WHERE sha256 = (SELECT min(sha256) FROM blobs)")
    mismatch = run_copy(tmp_path / "big", url)
    assert mismatch.returncode == 1
    flagged = [line.split()[0] for line in mismatch.stdout.splitlines() if line.endswith("MISMATCH")]
    assert flagged == ["messages", "message_labels", "blob", "blob"], mismatch.stdout
    assert "differ" in mismatch.stderr


def test_refusals_leave_both_sides_untouched(install, postgres_cluster, dns_server, tmp_path) -> None:
    # A database a server already uses is not a copy of this install.
    used = postgres_cluster.new_empty_database()
    start_server(tmp_path / "other", dns_server, database_url=used).stop()
    refused = run_copy(install["data_dir"], used)
    assert refused.returncode == 1 and "already holds data" in refused.stderr

    # A copy of another install cannot be continued with this one.
    other = tmp_path / "second-install"
    seed(other, 10)
    copied = postgres_cluster.new_empty_database()
    assert run_copy(other, copied).returncode == 0
    mixed = run_copy(install["data_dir"], copied)
    assert mixed.returncode == 1 and "another install" in mixed.stderr

    # An install whose server is running is not copied.
    server = start_server(other, dns_server)
    try:
        busy = run_copy(other, postgres_cluster.new_empty_database())
    finally:
        server.stop()
    assert busy.returncode == 1 and "in use by another Commune server" in busy.stderr

    # The install changed after a copy into this database began: it cannot be resumed.
    start_server(other, dns_server).stop()
    stale = run_copy(other, copied)
    assert stale.returncode == 1 and "changed since" in stale.stderr

    for args in (["--from", str(tmp_path / "nothing"), "--to", copied],
                 ["--from", str(install["data_dir"]), "--to", "mysql://x"]):
        wrong = subprocess.run([sys.executable, "-m", "backend", "copy", *args], check=False,
                               capture_output=True, text=True, cwd=ROOT)
        assert wrong.returncode == 1 and wrong.stderr.startswith("commune-server: ")


def test_progress_redraws_one_line_on_a_terminal_and_writes_lines_elsewhere() -> None:
    terminal, log = io.StringIO(), io.StringIO()
    for stream, tty in ((terminal, True), (log, False)):
        progress = Progress(stream, tty=tty)
        progress.start("messages", 4000, done=2000)
        progress.advance(2000)
        progress.note("building indexes")
        progress.finish()
    drawn = terminal.getvalue()
    assert drawn.count("\n") == 1 and drawn.endswith("\n") and drawn.count("\r") >= 3
    assert " 50%  2,000/4,000" in drawn and "100%  4,000/4,000" in drawn and "building indexes" in drawn
    lines = log.getvalue().splitlines()
    assert lines[0] == "messages: resuming at 2,000 of 4,000" and lines[-2] == "messages: building indexes"
    assert lines[-1].startswith("messages: 4,000/4,000 in ") and lines[-1].endswith(" s, done")
