"""Seed a mailbox through the HTTP API: the user's inboxes, and correspondents in another organisation."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import httpx

CORRESPONDENTS = {
    "alice": "Alice Martin",
    "bob": "Bob Okafor",
    "carol": "Carol Diaz",
    "dmitri": "Dmitri Ivanov",
}

CONVERSATIONS = [
    ("alice", "Quarterly report draft",
     "Hi,\n\nThe draft of the quarterly report is attached. Could you look at the revenue\n"
     "section before Friday? The numbers for March are still provisional.\n\nThanks,\nAlice",
     [("report-q1.pdf", "application/pdf", b"%PDF-1.4 quarterly report " * 400)]),
    ("bob", "Lunch on Thursday?",
     "Are you free for lunch on Thursday? The new place on Dock Street opened last week.\n\nBob", []),
    ("carol", "Server maintenance window",
     "Heads up: the mail relay gets its kernel update on Sunday 02:00-03:00 UTC.\n"
     "Expect a few minutes of queued outbound mail.\n\nCarol", []),
    ("dmitri", "Re: Conference talk",
     "Your talk proposal was accepted! Slides are due two weeks before the event.\n\nDmitri", []),
]


@dataclass
class Seeded:
    """What the seeder made: the user's inboxes and the correspondents' key and inboxes."""

    me: dict
    support: dict
    others_key: str
    others: dict[str, dict] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    """The user's thread ids by subject."""


def _ok(response: httpx.Response) -> dict:
    assert response.is_success, response.text
    return response.json()


def make_inbox(client: httpx.Client, local_part: str, name: str | None = None) -> dict:
    return _ok(client.post("/v1/inboxes", json={"local_part": local_part, "name": name}))["data"]


def send(client: httpx.Client, inbox_id: str, to: str, subject: str, text: str,
         attachments: list[tuple[str, str, bytes]] = (), thread_id: str | None = None) -> dict:
    """Send through `POST /v1/messages/send`, uploading attachments first."""
    ids = []
    for filename, mime, content in attachments:
        upload = _ok(client.post("/v1/attachments/upload", json={
            "content": base64.b64encode(content).decode(), "filename": filename, "mime_type": mime}))
        ids.append(upload["data"]["attachment_id"])
    body = {"inboxId": inbox_id, "to": [to], "subject": subject, "text": text, "attachments": ids}
    if thread_id:
        body["thread_id"] = thread_id
    return _ok(client.post("/v1/messages/send", json=body))["data"]


def seed_mailbox(user: httpx.Client, others: httpx.Client, others_key: str, suffix: str = "") -> Seeded:
    """The user's `me` and `support` inboxes, and a few conversations sent to `me` by correspondents."""
    seeded = Seeded(me=make_inbox(user, f"me{suffix}", "Me"),
                    support=make_inbox(user, f"support{suffix}", "Support"), others_key=others_key)
    for local, name in CORRESPONDENTS.items():
        seeded.others[local] = make_inbox(others, f"{local}{suffix}", name)
    for local, subject, text, attachments in CONVERSATIONS:
        send(others, seeded.others[local]["id"], seeded.me["address"], subject, text, attachments)
    seeded.threads = {t["subject"]: t["thread_id"] for t in threads_of(user, seeded.me["id"])}
    return seeded


def threads_of(client: httpx.Client, inbox_id: str) -> list[dict]:
    return _ok(client.get("/v1/threads", params={"inbox_id": inbox_id, "limit": 100}))["data"]


def messages_of(client: httpx.Client, thread_id: str) -> list[dict]:
    return _ok(client.get(f"/v1/threads/{thread_id}/messages"))["data"]
