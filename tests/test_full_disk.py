"""A full disk: uploads and sends answer 507, nothing half-stored stays behind, and it all works again once
space is freed. The data directory sits on a small tmpfs mounted in the server's own mount namespace."""

from __future__ import annotations

import base64
import errno
import os
import shutil
import smtplib
import sqlite3
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess

NAMESPACES = ["unshare", "--user", "--map-root-user", "--mount"]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*NAMESPACES, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs user and mount namespaces (unshare)")


class SmallDisk:
    """A server whose data directory is on an 8 MiB tmpfs; `.seen` is that disk as this process sees it."""

    def __init__(self, mount: Path) -> None:
        launcher = [*NAMESPACES, "sh", "-c", 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"', str(mount)]
        self.server = ServerProcess(mount / "data", launcher=launcher).start()
        assert self.server.proc is not None
        self.seen = Path(f"/proc/{self.server.proc.pid}/root{mount}")
        self.key = (self.seen / "data" / "admin.key").read_text().strip()
        self.filler = self.seen / "filler"

    def fill(self) -> None:
        """Write until the disk refuses even one more byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()

    def rows(self, table: str, scratch: Path) -> int:
        """Rows stored in `table`, read from a copy of the database (SQLite resolves /proc/…/root away)."""
        for name in ("commune.db", "commune.db-wal"):
            shutil.copyfile(self.seen / "data" / name, scratch / name)
        db = sqlite3.connect(scratch / "commune.db")
        try:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            db.close()

    def temporary_files(self) -> list[Path]:
        return [p for p in (self.seen / "data").rglob(".tmp-*")]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount = tmp_path / "disk"
    mount.mkdir()
    made = SmallDisk(mount)
    yield made
    made.server.stop()


def upload(api: httpx.Client, content: bytes) -> httpx.Response:
    return api.post("/v1/attachments/upload", json={
        "content": base64.b64encode(content).decode(), "filename": "big.bin", "mime_type": "application/pdf"})


def smtp_delivery(port: int, to: str, subject: str) -> int:
    """The SMTP reply code to DATA for one message with an attachment."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ann@sender.example", to, subject
    message.set_content("hello")
    message.add_attachment(os.urandom(20_000), maintype="application", subtype="octet-stream", filename="a.bin")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        try:
            client.send_message(message)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
    return 250


def test_upload_send_and_smtp_on_a_full_disk_then_after_space_is_freed(disk: SmallDisk, tmp_path: Path) -> None:
    with disk.server.client(disk.key) as api:
        sender = api.post("/v1/inboxes", json={"local_part": "sender"}).json()["data"]
        recipient = api.post("/v1/inboxes", json={"local_part": "recipient"}).json()["data"]
        kept = upload(api, os.urandom(10_000))
        assert kept.status_code == 201, kept.text
        attachment_id = kept.json()["data"]["attachment_id"]
        send = {"to": recipient["address"], "subject": "report", "text": "see attached " * 200,
                "inboxId": sender["id"], "attachments": [attachment_id]}
        disk.fill()

        refused = upload(api, os.urandom(300_000))
        assert refused.status_code == 507, refused.text
        assert "space" in refused.json()["error"]
        unsent = api.post("/v1/messages/send", json=send)
        assert unsent.status_code == 507, unsent.text
        assert "space" in unsent.json()["error"]
        assert smtp_delivery(disk.server.smtp_port, recipient["address"], "over smtp") == 451
        # Nothing half-stored: no new attachment or message rows, no temporary files.
        assert disk.rows("attachments", tmp_path) == 1 and disk.rows("messages", tmp_path) == 0
        assert disk.temporary_files() == []
        for inbox in (sender, recipient):
            assert api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"] == []

        disk.free()
        again = upload(api, os.urandom(300_000))
        assert again.status_code == 201, again.text
        sent = api.post("/v1/messages/send", json=send)
        assert sent.status_code == 200, sent.text
        assert smtp_delivery(disk.server.smtp_port, recipient["address"], "over smtp") == 250
        subjects = {m["metadata"]["subject"] for m in
                    api.get("/v1/messages", params={"inbox_id": recipient["id"]}).json()["data"]}
        assert subjects == {"report", "over smtp"}


def test_a_database_that_cannot_grow_answers_507_and_keeps_no_partial_rows(running) -> None:
    """SQLite's own "database or disk is full" (SQLITE_FULL), here from a page limit on the live database."""
    database = running.server.services.database
    key = running.new_key(["read", "write"])
    with running.client(key) as api:
        inbox = api.post("/v1/inboxes", json={"local_part": "capped"}).json()["data"]
        # Migrations that rebuild indexes leave free pages; VACUUM drops them so the cap bites at once.
        running.run(lambda: database.execute("VACUUM"))
        cap = "PRAGMA max_page_count = " + str(running.run(lambda: database.one("PRAGMA page_count")[0]))
        # The limit is a connection's: the shared one and the writer thread's (the group commit's) both get it.
        running.run(lambda: database.execute(cap))
        running.run(lambda: database.write(database.execute, cap))
        try:
            answers = []
            for n in range(400):
                answers.append(upload(api, os.urandom(64) + b"x" * n).status_code)
                if answers[-1] != 201:
                    break
            assert answers[-1] == 507 and set(answers[:-1]) <= {201}, answers
            send = {"to": inbox["address"], "subject": "to myself " + "y" * 400, "text": "z" * 20_000,
                    "inboxId": inbox["id"]}
            refused = api.post("/v1/messages/send", json=send)
            assert refused.status_code == 507, refused.text
            assert api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"] == []
        finally:
            running.run(lambda: database.execute("PRAGMA max_page_count = 4294967294"))
            running.run(lambda: database.write(database.execute, "PRAGMA max_page_count = 4294967294"))
        assert api.post("/v1/messages/send", json=send).status_code == 200
        assert upload(api, b"after the limit was lifted").status_code == 201
