"""A realistic demo mailbox for the README's screenshots.

A team at `northwind.example` (a verified domain published in a local DNS server) with inboxes on it
and on the server's default domain. Correspondents at several outside domains, some with non-ASCII
names, write in over real SMTP with their own `Date:` headers; the user answers through
`POST /v1/messages/send`, relayed to a local sink. One conversation runs to a dozen messages, and the
mail spans five weeks: after seeding, each message's arrival time is set to the moment its story
gives it (the only step that writes the database directly: the server stamps arrivals with the
real clock). Some threads are read, some flagged, one archived.
"""

from __future__ import annotations

import smtplib
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import httpx

from backend.util import iso
from tests.dnsserver import TestDNSServer

OWN_DOMAIN = "northwind.example"
INBOXES = {  # key: (local part, domain or None for the server's default, display name)
    "me": ("ines", OWN_DOMAIN, "Inês Carvalho"),
    "support": ("support", OWN_DOMAIN, "Northwind Support"),
    "agent": ("triage-bot", None, "Triage agent"),
}
PEOPLE = {
    "zoe@kestrel-analytics.de": "Zoë Müller",
    "soren@fjordline.dk": "Søren Lindqvist",
    "hanako@sakura-logistics.jp": "佐藤 花子",
    "lukasz@vistula.pl": "Łukasz Nowak",
    "priya@banyan.in": "Priya Raman",
    "anais@lumiere.fr": "Anaïs Dubois",
    "billing@stripe-mail.example": "Stripe",
    "noreply@ci.example": "Build server",
    "jose@alvarez.es": "José Álvarez",
}
PDF = b"%PDF-1.4 " + b"quarterly figures " * 700


@dataclass
class Mail:
    """One message of the story: `ago` days before now, from a correspondent or from the user."""

    ago: float
    sender: str
    inbox: str
    subject: str
    text: str
    thread: str = ""
    attachment: tuple[str, str, bytes] | None = None


RELAY = "relay-migration"
STORY: list[Mail] = [
    Mail(34.2, "soren@fjordline.dk", "me", "Relay migration plan",
         "Hej Inês,\n\nAs discussed, we would like to move our outbound relay to your platform before\n"
         "the holiday freeze. Could you share the cut-over checklist?\n\nSøren", RELAY),
    Mail(33.9, "me", "me", "Re: Relay migration plan",
         "Hi Søren,\n\nHappy to. The checklist is below; the only step on your side is the SPF\n"
         "include and the DKIM record.\n\nInês", RELAY),
    Mail(31.5, "soren@fjordline.dk", "me", "Re: Relay migration plan",
         "Thanks. DKIM is published, SPF will follow on Monday after our change board.\n\nSøren", RELAY),
    Mail(30.1, "zoe@kestrel-analytics.de", "me", "Quarterly figures for review",
         "Hallo Inês,\n\nthe quarterly figures are attached. Revenue for September is still\n"
         "provisional; everything else is final.\n\nViele Grüße\nZoë", "figures",
         ("figures-q3.pdf", "application/pdf", PDF)),
    Mail(27.8, "me", "me", "Re: Relay migration plan",
         "Monday works. I will verify from our side once the record is live.\n\nInês", RELAY),
    Mail(26.4, "hanako@sakura-logistics.jp", "support", "配送状況の確認 (delivery status)",
         "こんにちは、\n\n先週送った荷物の配送状況を確認できますか？\nCould you check the delivery status of last week's parcel?\n\n佐藤",
         "parcel"),
    Mail(24.0, "soren@fjordline.dk", "me", "Re: Relay migration plan",
         "SPF include is live. Our monitoring shows the first test messages passing DMARC.\n\nSøren",
         RELAY),
    Mail(21.7, "me", "me", "Re: Relay migration plan",
         "Confirmed: SPF, DKIM and DMARC all pass on our side. Shall we cut over on the 14th?\n\nInês",
         RELAY),
    Mail(20.3, "lukasz@vistula.pl", "me", "Invitation: architecture review",
         "Cześć,\n\nwe are holding an architecture review on Thursday at 14:00 CET. Your view on the\n"
         "agent mail flows would help a lot.\n\nŁukasz", "review"),
    Mail(18.9, "soren@fjordline.dk", "me", "Re: Relay migration plan",
         "The 14th is fine. We will lower the TTLs two days before.\n\nSøren", RELAY),
    Mail(16.2, "billing@stripe-mail.example", "support", "Your receipt from Northwind [#2041-7731]",
         "Receipt #2041-7731\n\nAmount paid: €49.00\nDate paid: last month\nPayment method: Visa ending 4242\n",
         "receipt"),
    Mail(14.6, "me", "me", "Re: Relay migration plan",
         "Cut-over done at 09:12 UTC. Queue drained in four minutes, no deferrals.\n\nInês", RELAY),
    Mail(13.1, "priya@banyan.in", "agent", "Order #88213 has not arrived",
         "Hello,\n\nmy order #88213 was due last Tuesday and the tracking page has not moved since.\n"
         "Can you look into it?\n\nPriya", "order"),
    Mail(12.9, "soren@fjordline.dk", "me", "Re: Relay migration plan",
         "Great work. One question: bounces for our old return path still arrive at the old\n"
         "relay. Can you forward those for a week?\n\nSøren", RELAY),
    Mail(10.4, "anais@lumiere.fr", "me", "Contrat de maintenance 2027",
         "Bonjour Inês,\n\nvoici notre proposition pour le contrat de maintenance de l'année prochaine.\n"
         "N'hésitez pas si vous avez des questions.\n\nAnaïs", "contract"),
    Mail(9.2, "me", "me", "Re: Relay migration plan",
         "Forwarding is set up until the 28th. After that the old return path answers 550.\n\nInês",
         RELAY),
    Mail(7.5, "jose@alvarez.es", "me", "Re: Invitation: architecture review",
         "Count me in. I will bring the numbers from the load test.\n\nJosé", "review"),
    Mail(5.3, "soren@fjordline.dk", "me", "Re: Relay migration plan",
         "All quiet for a week now. Closing our change ticket. Tak for hjælpen!\n\nSøren", RELAY),
    Mail(3.8, "noreply@ci.example", "agent", "Build #4127 failed on main",
         "Build #4127 failed on main.\n\nFailed step: integration tests (2 of 1 148)\nCommit: 3f9c2e1\n",
         "build"),
    Mail(2.2, "zoe@kestrel-analytics.de", "me", "Re: Quarterly figures for review",
         "September is final now; the corrected file replaces the earlier one.\n\nZoë", "figures",
         ("figures-q3-final.pdf", "application/pdf", PDF)),
    Mail(1.1, "priya@banyan.in", "agent", "Re: Order #88213 has not arrived",
         "It arrived this morning, thank you for chasing it!\n\nPriya", "order"),
    Mail(0.12, "soren@fjordline.dk", "me", "Re: Relay migration plan",
         "One more thing: could you send the post-migration report for our records?\n\nSøren", RELAY),
    Mail(0.05, "lukasz@vistula.pl", "me", "Slides from the architecture review",
         "Slides are up on the wiki. Thanks everyone for the discussion.\n\nŁukasz", "slides"),
]
READ = {"parcel", "receipt", "contract", "build", "order", "review"}
FLAGGED = {RELAY, "figures"}
ARCHIVED = {"receipt"}


@dataclass
class Demo:
    """What the demo seeder made: the user's inboxes by key and thread ids by story key."""

    inboxes: dict[str, dict]
    threads: dict[str, str]


def publish_domain(api: httpx.Client, dns: TestDNSServer, name: str) -> dict:
    """Create `name`, publish its records in the local DNS server and verify it."""
    domain = api.post("/v1/domains", json={"name": name}).json()["data"]
    for record in api.get(f"/v1/domains/{domain['id']}/records").json()["data"]:
        value = record["value"]
        if record["type"] == "MX":
            dns.publish(record["name"], "MX", f"10 {value}.")
        else:
            chunks = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))
            dns.publish(record["name"], "TXT", chunks)
    verified = api.post(f"/v1/domains/{domain['id']}/verify").json()["data"]
    assert verified["status"] == "verified", verified
    return domain


def publish_correspondents(dns: TestDNSServer) -> None:
    """Each outside domain gets an MX (so the user's replies pass recipient validation), and SPF and
    DMARC records that let its mail, sent from this machine, pass authentication."""
    for domain in sorted({address.split("@")[1] for address in PEOPLE}):
        dns.publish(domain, "MX", f"10 mx.{domain}.")
        dns.publish(f"mx.{domain}", "A", "127.0.0.1")
        dns.publish(domain, "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"')
        dns.publish(f"_dmarc.{domain}", "TXT", '"v=DMARC1; p=reject"')


def seed_demo(api: httpx.Client, smtp_port: int, db_path: Path, dns: TestDNSServer,
              now: datetime | None = None) -> Demo:
    """Seed the story into a running server whose relay points at a local sink."""
    now = now or datetime.now(UTC)
    publish_correspondents(dns)
    domain = publish_domain(api, dns, OWN_DOMAIN)
    inboxes = {}
    for key, (local, on_domain, name) in INBOXES.items():
        body = {"local_part": local, "name": name}
        if on_domain:
            body["domain_id"] = domain["id"]
        response = api.post("/v1/inboxes", json=body)
        assert response.is_success, response.text
        inboxes[key] = response.json()["data"]

    threads: dict[str, str] = {}
    last_id: dict[str, str] = {}  # the newest Message-ID of each story thread, for In-Reply-To
    arrivals: list[tuple[str, datetime]] = []
    with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
        for mail in STORY:
            when = now - timedelta(days=mail.ago)
            inbox = inboxes[mail.inbox]
            if mail.sender == "me":
                message = _reply(api, inbox, threads[mail.thread], mail)
            else:
                message = _deliver(api, smtp, inbox, mail, when, last_id.get(mail.thread))
            threads.setdefault(mail.thread, message["thread_id"])
            last_id[mail.thread] = message["smtp_message_id"]
            arrivals.append((message["message_id"], when))

    _backdate(db_path, arrivals)
    for key, thread_id in threads.items():
        add = (["flagged"] if key in FLAGGED else []) + (["archived"] if key in ARCHIVED else [])
        remove = ["unread"] if key in READ else []
        if add or remove:
            response = api.patch(f"/v1/threads/{thread_id}",
                                 json={"add_labels": add, "remove_labels": remove})
            assert response.is_success, response.text
    return Demo(inboxes, threads)


def _deliver(api: httpx.Client, smtp: smtplib.SMTP, inbox: dict, mail: Mail, when: datetime,
             parent: str | None) -> dict:
    message = EmailMessage()
    message["From"] = f"{PEOPLE[mail.sender]} <{mail.sender}>"
    message["To"] = f"{inbox.get('name') or ''} <{inbox['address']}>"
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = f"<{uuid.uuid4().hex}@{mail.sender.split('@')[1]}>"
    if parent:
        message["In-Reply-To"] = parent
        message["References"] = parent
    message.set_content(mail.text)
    if mail.attachment:
        filename, mime, content = mail.attachment
        maintype, subtype = mime.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    smtp.send_message(message, from_addr=mail.sender, to_addrs=[inbox["address"]])
    found = api.get("/v1/messages", params={"inbox_id": inbox["id"], "limit": 1}).json()["data"][0]
    return {"message_id": found["message_id"], "thread_id": found["thread_id"],
            "smtp_message_id": message["Message-ID"]}


def _reply(api: httpx.Client, inbox: dict, thread_id: str, mail: Mail) -> dict:
    correspondent = next(m.sender for m in STORY if m.thread == mail.thread and m.sender != "me")
    response = api.post("/v1/messages/send", json={
        "inboxId": inbox["id"], "to": [correspondent], "subject": mail.subject, "text": mail.text,
        "thread_id": thread_id})
    assert response.is_success, response.text
    data = response.json()["data"]
    return {"message_id": data["message_id"], "thread_id": data["thread_id"],
            "smtp_message_id": data["smtp_message_id"]}


def _backdate(db_path: Path, arrivals: list[tuple[str, datetime]]) -> None:
    """Give each message the arrival time of its place in the story, and each thread its span."""
    with sqlite3.connect(db_path, timeout=30) as db:
        db.executemany("UPDATE messages SET created_at = ? WHERE id = ?",
                       [(iso(when), message_id) for message_id, when in arrivals])
        db.execute("""UPDATE threads SET
            first_message_at = (SELECT min(created_at) FROM messages m WHERE m.thread_id = threads.id),
            last_message_at = (SELECT max(created_at) FROM messages m WHERE m.thread_id = threads.id)
            WHERE id IN (SELECT thread_id FROM messages)""")


def seed_outbox(api: httpx.Client, agent: httpx.Client, demo: Demo, now: datetime) -> None:
    """What waits in the Outbox: two replies of the triage agent, whose key holds every send for a
    person's approval; a reply of the user scheduled for tomorrow morning; a draft."""
    def send(client: httpx.Client, inbox: str, thread: str, to: str, subject: str, text: str,
             **extra: object) -> None:
        response = client.post("/v1/messages/send", json={
            "inboxId": demo.inboxes[inbox]["id"], "to": [to], "subject": subject, "text": text,
            "thread_id": demo.threads[thread], **extra})
        assert response.status_code == 202, response.text

    send(agent, "agent", "order", "priya@banyan.in", "Re: Order #88213 has not arrived",
         "Hi Priya,\n\nGlad the parcel arrived! To make up for the delay, here is a 15% discount on\n"
         "your next order: SORRY-88213.\n\nNorthwind triage agent")
    send(agent, "support", "parcel", "hanako@sakura-logistics.jp", "Re: 配送状況の確認 (delivery status)",
         "佐藤様\n\nお荷物は本日配達済みです。/ Your parcel was delivered today.\n\nNorthwind Support")
    tomorrow = (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    send(api, "me", "contract", "anais@lumiere.fr", "Re: Contrat de maintenance 2027",
         "Bonjour Anaïs,\n\nThe signed contract is on its way by post.\n\nInês",
         send_at=tomorrow.isoformat(timespec="seconds"))
    response = api.post("/v1/drafts", json={
        "inbox_id": demo.inboxes["me"]["id"], "to": ["soren@fjordline.dk"], "thread_id": demo.threads[RELAY],
        "subject": "Re: Relay migration plan", "text": "Hej Søren,\n\nThe cut-over went well; "})
    assert response.is_success, response.text
