"""Domain ownership: an unverified domain receives nothing from outside and blocks nobody; a DNS token
unique to the organisation proves ownership, and only one organisation can hold a name verified."""

from __future__ import annotations

import smtplib
import sqlite3
import uuid
from email.message import EmailMessage
from pathlib import Path

import httpx

from backend.store.migrations import MIGRATIONS
from tests import dnsserver
from tests.conftest import Running, start_server


def new_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}.test"


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()["data"]


def ownership(records: list[dict]) -> dict:
    [record] = [r for r in records if r["record"] == "Ownership"]
    return record


def publish(dns_server: dnsserver.TestDNSServer, records: list[dict]) -> None:
    for record in records:
        if record["type"] == "MX":
            dns_server.publish(record["name"], "MX", f"{record['priority']} {record['value']}.")
        else:
            value = record["value"]
            dns_server.publish(record["name"], "TXT", " ".join(f'"{value[i:i + 200]}"'
                                                               for i in range(0, len(value), 200)))


def rcpt_answer(running: Running, address: str) -> tuple[int, bytes]:
    """What our SMTP listener answers to `RCPT TO` for an address, from a stranger on the internet."""
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as client:
        client.ehlo("stranger.example")
        client.mail("someone@stranger.example")
        return client.rcpt(address)


def deliver(running: Running, address: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "someone@stranger.example"
    message["To"] = address
    message["Subject"] = subject
    message.set_content("For the owner of this domain")
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=10) as client:
        assert client.send_message(message) == {}


def subjects(api: httpx.Client, inbox_id: str) -> list[str]:
    return [m["metadata"]["subject"] for m in ok(api.get("/v1/messages", params={"inbox_id": inbox_id}))]


def test_a_squatter_gets_no_mail_and_the_owner_claims_the_domain(running: Running,
                                                                 dns_server: dnsserver.TestDNSServer) -> None:
    name = new_name("c-corp")
    with running.client(running.new_key()) as squatter, running.client(running.new_key()) as owner:
        taken = ok(squatter.post("/v1/domains", json={"name": name}), 201)
        squatter_ceo = ok(squatter.post(f"/v1/domains/{taken['id']}/inboxes", json={"local_part": "ceo"}), 201)

        # Mail from outside for the unverified domain is refused exactly like mail for nobody.
        refused = rcpt_answer(running, f"ceo@{name}")
        assert refused[0] == 550
        assert refused == rcpt_answer(running, f"nobody@{name}") == rcpt_answer(running, f"ceo@{new_name('x')}")
        assert subjects(squatter, squatter_ceo["id"]) == []

        claimed = ok(owner.post("/v1/domains", json={"name": name}), 201)
        assert claimed["id"] != taken["id"] and claimed["status"] == "not_started"
        owner_records = ok(owner.get(f"/v1/domains/{claimed['id']}/records"))
        squatter_records = ok(squatter.get(f"/v1/domains/{taken['id']}/records"))
        token = ownership(owner_records)
        assert token["name"] == f"_commune-verify.{name}" and token["type"] == "TXT"
        assert token["status"] == "pending" and token["value"].startswith("commune-verification=")
        assert ownership(squatter_records)["value"] != token["value"]
        assert token in ok(owner.get(f"/v1/domains/{claimed['id']}"))["records"]

        # Everything published, but the squatter's token in place of the owner's: not verified.
        publish(dns_server, [*(r for r in owner_records if r["record"] != "Ownership"), ownership(squatter_records)])
        result = ok(owner.post(f"/v1/domains/{claimed['id']}/verify"))
        assert result["status"] == "failed"
        assert ownership(result["records"])["status"] == "failed"
        assert {r["status"] for r in result["records"] if r["record"] != "Ownership"} == {"verified"}

        publish(dns_server, [token])
        assert ok(owner.post(f"/v1/domains/{claimed['id']}/verify"))["status"] == "verified"
        assert ownership(ok(owner.get(f"/v1/domains/{claimed['id']}/records")))["status"] == "verified"

        # The squatter cannot verify the name now, even with its own token published beside the owner's.
        dns_server.publish(f"_commune-verify.{name}", "TXT", f'"{token["value"]}"',
                           f'"{ownership(squatter_records)["value"]}"')
        blocked = squatter.post(f"/v1/domains/{taken['id']}/verify")
        assert blocked.status_code == 409
        assert blocked.json()["error"] == f"Domain {name} is already verified by another organisation"
        assert ok(squatter.get(f"/v1/domains/{taken['id']}"))["status"] == "not_started"
        with running.client(running.new_key()) as latecomer:
            late = latecomer.post("/v1/domains", json={"name": name})
            assert late.status_code == 409
            assert late.json()["error"] == f"Domain {name} is already verified by another organisation"

        owner_ceo = ok(owner.post(f"/v1/domains/{claimed['id']}/inboxes", json={"local_part": "ceo"}), 201)
        assert owner_ceo["address"] == squatter_ceo["address"] == f"ceo@{name}"
        deliver(running, f"ceo@{name}", "Board meeting")
        assert subjects(owner, owner_ceo["id"]) == ["Board meeting"]
        assert subjects(squatter, squatter_ceo["id"]) == []

        # Even the squatter's own API sends to the name now reach the verified owner, not its copy.
        desk = ok(squatter.post("/v1/inboxes", json={"local_part": f"desk-{uuid.uuid4().hex[:6]}"}), 201)
        ok(squatter.post("/v1/messages/send", json={"inboxId": desk["id"], "to": [f"ceo@{name}"],
                                                     "subject": "Via the API", "text": "Hello"}))
        assert subjects(owner, owner_ceo["id"]) == ["Via the API", "Board meeting"]
        assert subjects(squatter, squatter_ceo["id"]) == []


def test_api_sends_reach_an_unverified_domain_only_from_its_own_organisation(running: Running) -> None:
    name = new_name("in-house")
    with running.client(running.new_key()) as holder, running.client(running.new_key()) as stranger:
        domain = ok(holder.post("/v1/domains", json={"name": name}), 201)
        ceo = ok(holder.post(f"/v1/domains/{domain['id']}/inboxes", json={"local_part": "ceo"}), 201)
        desk = ok(holder.post("/v1/inboxes", json={"local_part": f"desk-{uuid.uuid4().hex[:6]}"}), 201)
        outsider = ok(stranger.post("/v1/inboxes", json={"local_part": f"out-{uuid.uuid4().hex[:6]}"}), 201)

        sent = ok(holder.post("/v1/messages/send", json={"inboxId": desk["id"], "to": [ceo["address"]],
                                                          "subject": "Internal memo", "text": "Hi"}))
        assert sent["status"] == "delivered"
        assert subjects(holder, ceo["id"]) == ["Internal memo"]

        # The holder's domain name is nobody's on this server as far as another organisation can tell.
        refused = stranger.post("/v1/messages/send", json={"inboxId": outsider["id"], "to": [ceo["address"]],
                                                           "subject": "Phishing", "text": "Hi"})
        assert refused.status_code == 400
        assert refused.json()["error"] == f"No valid recipients: {ceo['address']} (No MX records found)"
        assert subjects(holder, ceo["id"]) == ["Internal memo"]

        # Sending from the unverified domain's own inbox still works for the organisation that holds it.
        reply = holder.post("/v1/messages/send", json={"from": ceo["address"], "to": [desk["address"]],
                                                        "subject": "Re: Internal memo", "text": "Thanks"})
        assert ok(reply)["status"] == "delivered"
        assert subjects(holder, desk["id"]) == ["Re: Internal memo", "Internal memo"]


def test_upgrade_keeps_domains_and_inboxes_and_frees_unverified_names(tmp_path: Path,
                                                                      dns_server: dnsserver.TestDNSServer) -> None:
    """A data directory from before ownership tokens: rows, indexes and mail routing survive the upgrade."""
    conn = sqlite3.connect(tmp_path / "commune.db", isolation_level=None)
    for script in MIGRATIONS[:6]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 6")
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org-old', 'old', '2024-01-01T00:00:00.000Z')")
    for domain_id, name, status in [("d-verified", "kept.test", "verified"), ("d-pending", "parked.test", "pending")]:
        conn.execute("INSERT INTO domains (id, org_id, name, status, records, created_at)"
                     " VALUES (?, 'org-old', ?, ?, '[]', '2024-01-01T00:00:00.000Z')", (domain_id, name, status))
        conn.execute("INSERT INTO inboxes (id, org_id, domain_id, local_part, address, created_at)"
                     " VALUES (?, 'org-old', ?, 'sales', ?, '2024-01-01T00:00:00.000Z')",
                     (f"i-{domain_id}", domain_id, f"sales@{name}"))
    conn.close()

    running = start_server(tmp_path, dns_server)
    try:
        services = running.server.services
        kept = running.run(lambda: services.domains.get_domain_any("d-verified"))
        parked = running.run(lambda: services.domains.get_domain_any("d-pending"))
        assert (kept["name"], kept["status"], ownership(kept["records"])["status"]) == ("kept.test", "verified",
                                                                                      "verified")
        assert (parked["status"], ownership(parked["records"])["status"]) == ("pending", "pending")
        assert ownership(kept["records"])["value"] != ownership(parked["records"])["value"]
        indexes = {row["name"] for row in running.run(lambda: services.database.query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('domains', 'inboxes')"))}
        assert {"domains_org", "inboxes_org", "inboxes_domain"} <= indexes

        assert rcpt_answer(running, "sales@kept.test")[0] == 250
        assert rcpt_answer(running, "sales@parked.test")[0] == 550
        with running.client(running.new_key()) as other:
            assert other.post("/v1/domains", json={"name": "parked.test"}).status_code == 201
            assert other.post("/v1/domains", json={"name": "kept.test"}).status_code == 409
    finally:
        running.stop()
