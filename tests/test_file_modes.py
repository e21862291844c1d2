"""Nothing the server writes to its data directory is readable by other users, whatever the umask."""

from __future__ import annotations

import base64
import os
import smtplib
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

from tests.server_process import ServerProcess


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The umask a child process started inside inherits."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def open_to_others(root: Path) -> list[str]:
    """Every file or directory at or under `root` with any group or other permission bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:03o}")
    return found


def test_a_fresh_data_dir_with_mail_in_it_is_private_under_umask_022(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    with umask(0o022):
        server = ServerProcess(data_dir).start()
    try:
        with server.client() as api:
            inbox = api.post("/v1/inboxes", json={"local_part": "private"}).json()["data"]
            uploaded = api.post("/v1/attachments/upload", json={
                "content": base64.b64encode(b"uploaded secret " * 64).decode(), "filename": "u.txt"})
            assert uploaded.status_code == 201, uploaded.text
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "ann@sender.example", inbox["address"], "hi"
            message.set_content("a private letter")
            message.add_attachment(b"mailed secret " * 64, maintype="application", subtype="octet-stream",
                                   filename="s.bin")
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
                client.send_message(message)
            assert api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
        names = {p.name for p in data_dir.iterdir()}
        assert {"commune.db", "commune.db-wal", "commune.db-shm", "blobs", "admin.key"} <= names, names
        assert open_to_others(data_dir) == []
    finally:
        server.stop()


def test_an_existing_data_dir_open_to_others_is_reported_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    server = ServerProcess(data_dir).start()
    try:
        warnings = [line for line in server.log if "WARNING" in line and str(data_dir) in line]
        assert warnings and "755" in warnings[0] and "chmod 700" in warnings[0], server.log
    finally:
        server.stop()
    # Only reported: the operator decides; the files the server created are private all the same.
    assert open_to_others(data_dir) == [f"{data_dir.name} 755"]
