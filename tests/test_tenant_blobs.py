"""Stored bytes belong to one organisation: no deduplication across tenants, no shared files to delete."""

from __future__ import annotations

import base64
import hashlib
import itertools
import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox

_orgs = itertools.count()


def new_org(running: Running) -> httpx.Client:
    return running.client(new_key(running))


def new_key(running: Running) -> str:
    return running.new_key(["read", "write", "data:delete"], org=f"blob-org-{next(_orgs)}")


def files_holding(data_dir: Path, content: bytes) -> list[Path]:
    """Every file under the data directory whose bytes are exactly `content`."""
    size = len(content)
    return [p for p in data_dir.rglob("*") if p.is_file() and p.stat().st_size == size and p.read_bytes() == content]


def copies_held(running: Running, content: bytes) -> int:
    """How many stored copies of `content` there are: files in the data directory, or on PostgreSQL rows of
    the `blobs` table."""
    services = running.server.services
    if services.database.engine == "postgresql":
        digest = hashlib.sha256(content).hexdigest()
        return running.run(lambda: services.database.one("SELECT count(*) FROM blobs WHERE sha256 = ?",
                                                         (digest,))[0])
    return len(files_holding(services.settings.data_dir, content))


def upload(api: httpx.Client, content: bytes, name: str = "report.pdf") -> dict:
    response = api.post("/v1/attachments/upload", json={
        "content": base64.b64encode(content).decode(), "filename": name, "mime_type": "application/pdf"})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def download(api: httpx.Client, attachment_id: str) -> httpx.Response:
    url = api.get(f"/v1/attachments/{attachment_id}/url").json()["data"]["url"]
    return httpx.get(url, timeout=30)


def delete_organisation(api: httpx.Client) -> None:
    created = api.post("/v1/data/deletion-request", json={"scope": "organization"}).json()
    done = api.post(f"/v1/data/deletion-request/{created['id']}/confirm",
                    json={"confirmation_token": created["confirmation_token"]})
    assert done.status_code == 200, done.text


def test_the_same_upload_in_two_organisations_is_two_files_and_survives_the_others_deletion(running: Running) -> None:
    first, second = new_org(running), new_org(running)
    content = b"%PDF-1.7 quarterly figures nobody else should learn about " * 40
    upload(first, content)
    ours = upload(second, content)
    assert copies_held(running, content) == 2

    delete_organisation(first)
    assert copies_held(running, content) == 1
    fetched = download(second, ours["attachment_id"])
    assert fetched.status_code == 200 and fetched.content == content


def test_mail_to_two_organisations_is_stored_once_for_each(running: Running) -> None:
    first, second = new_org(running), new_org(running)
    inboxes = [make_inbox(first), make_inbox(second)]
    content = b"the same attachment, mailed to two tenants at once " * 30
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ann@sender.example", inboxes[0]["address"], "figures"
    message.set_content("see attached")
    message.add_attachment(content, maintype="application", subtype="octet-stream", filename="figures.bin")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as client:
        client.send_message(message, to_addrs=[inbox["address"] for inbox in inboxes])
    # The 250 came after the commit: both copies are stored.
    received = [api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
                for api, inbox in zip((first, second), inboxes, strict=True)]
    assert copies_held(running, content) == 2

    # A sent copy and its local recipient's copy belong to two organisations as well.
    sent = first.post("/v1/messages/send", json={
        "to": inboxes[1]["address"], "subject": "again", "text": "same file",
        "inboxId": inboxes[0]["id"], "attachments": [upload(first, content)["attachment_id"]]})
    assert sent.status_code == 200, sent.text

    delete_organisation(first)
    assert copies_held(running, content) == 1  # the second organisation's, for its two messages
    [attachment_id] = received[1][0]["attachments"]
    fetched = download(second, attachment_id)
    assert fetched.status_code == 200 and fetched.content == content


def test_blobs_of_the_shared_layout_are_moved_to_their_organisations_at_start(
    tmp_path: Path, dns_server
) -> None:
    content = b"stored by an older version of the server " * 20
    running = start_server(tmp_path, dns_server)
    try:
        keys = [new_key(running), new_key(running)]
        ids = [upload(running.client(key), content)["attachment_id"] for key in keys]
    finally:
        running.stop()
    # The older layout kept one file for everyone: blobs/ab/cdef…
    digest = hashlib.sha256(content).hexdigest()
    shared = tmp_path / "blobs" / digest[:2] / digest[2:]
    shared.parent.mkdir()
    for copy in files_holding(tmp_path, content):
        copy.rename(shared)

    running = start_server(tmp_path, dns_server)
    try:
        first, second = (running.client(key) for key in keys)
        for api, attachment_id in zip((first, second), ids, strict=True):
            fetched = download(api, attachment_id)
            assert fetched.status_code == 200 and fetched.content == content
        assert not shared.parent.exists()
        delete_organisation(first)
        fetched = download(second, ids[1])
        assert fetched.status_code == 200 and fetched.content == content
    finally:
        running.stop()
