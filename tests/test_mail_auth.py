"""Inbound SPF, DKIM and DMARC: records published on the test DNS server, mail sent over real SMTP.

Each test publishes its own sender domains (unique names, so the server's DNS cache never carries
one test's answers into another) and reads the results back the way a user would: the message's
`authentication`, the stored raw message's `Authentication-Results`, lists, search and webhooks.
"""

from __future__ import annotations

import itertools
import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import dkim
import httpx
import pytest

from backend.dns.records import generate_dkim_key
from tests.conftest import Running
from tests.mailtools import make_inbox
from tests.webhook_receiver import WebhookReceiver

_names = itertools.count()
SELECTOR = "mail"


def domain(label: str) -> str:
    return f"{label}-{next(_names)}.test"


def publish_sender(dns_server, name: str, *, spf: str | None = "v=spf1 ip4:127.0.0.1 -all",
                   dmarc: str | None = "v=DMARC1; p=reject") -> bytes:
    """SPF, DKIM and DMARC records for `name`; returns the private key that signs for it."""
    private_pem, public_b64 = generate_dkim_key()
    if spf is not None:
        dns_server.publish(name, "TXT", f'"{spf}"')
    dns_server.publish(f"{SELECTOR}._domainkey.{name}", "TXT", f'"v=DKIM1; k=rsa; p={public_b64}"')
    if dmarc is not None:
        dns_server.publish(f"_dmarc.{name}", "TXT", f'"{dmarc}"')
    return private_pem.encode()


def message(sender: str, to: str, subject: str, body: str = "Please wire the money today.") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}-{next(_names)}@auth.test>"
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def signed(raw: bytes, name: str, key: bytes) -> bytes:
    """`raw` with a DKIM-Signature by dkimpy, as the sending domain's server would add it."""
    return dkim.sign(raw, SELECTOR.encode(), name.encode(), key, include_headers=[b"from", b"to", b"subject"],
                     linesep=b"\r\n") + raw


def send(running: Running, mail_from: str, to: list[str], raw: bytes, helo: str = "client.auth.test") -> str:
    """One SMTP transaction from 127.0.0.1; returns the server's answer to the data."""
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=30) as client:
        client.ehlo(helo)
        client.mail(mail_from)
        for address in to:
            code, _ = client.rcpt(address)
            assert code == 250
        code, answer = client.data(raw)
    return f"{code} {answer.decode()}"


def listed(api: httpx.Client, inbox_id: str, **params: str) -> list[dict]:
    response = api.get("/v1/messages", params={"inbox_id": inbox_id, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def raw_of(running: Running, message_id: str) -> bytes:
    services = running.server.services
    row = running.run(lambda: services.database.one(
        "SELECT org_id, raw_sha256 FROM messages WHERE id = ?", (message_id,)))
    return running.run(lambda: services.blobs.get(row["org_id"], row["raw_sha256"]))


def results_header(raw: bytes) -> str:
    """The first Authentication-Results header, unfolded."""
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    start = headers.index("\r\nAuthentication-Results:") + 2
    end = headers.find("\r\n", start)
    while headers[end + 2:end + 3] in ("\t", " "):
        end = headers.find("\r\n", end + 2)
    return " ".join(headers[start:end].split())


def set_policy(api: httpx.Client, inbox: dict, setting: str) -> dict:
    response = api.patch(f"/v1/inboxes/{inbox['id']}", json={"reject_unauthenticated": setting})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_signed_mail_from_a_permitted_address_passes_spf_dkim_and_dmarc(running, api, dns_server) -> None:
    sender = domain("good")
    key = publish_sender(dns_server, sender)
    inbox = make_inbox(api)
    answer = send(running, f"bounces@{sender}", [inbox["address"]],
                  signed(message(f"CEO <ceo@{sender}>", inbox["address"], "Quarterly numbers"), sender, key))
    assert answer.startswith("250 ")
    [stored] = listed(api, inbox["id"])
    assert stored["authentication"] == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "from_domain": sender}
    assert stored["labels"] == ["received", "unread"]
    raw = raw_of(running, stored["id"])
    assert raw.startswith(b"Received: from client.auth.test ([127.0.0.1])")
    assert results_header(raw) == (
        f"Authentication-Results: mx.commune.test; spf=pass smtp.mailfrom={sender};"
        f" dkim=pass header.d={sender} header.s={SELECTOR}; dmarc=pass (p=reject) header.from={sender}")


def test_forged_from_of_a_reject_domain_fails_dmarc_and_is_found_by_auth_fail(running, api, dns_server) -> None:
    victim, attacker = domain("bank"), domain("attacker")
    publish_sender(dns_server, victim, spf="v=spf1 ip4:192.0.2.1 -all")
    publish_sender(dns_server, attacker, dmarc=None)
    inbox = make_inbox(api)
    # The attacker's own envelope passes SPF, but the From domain is someone else's: not aligned.
    answer = send(running, f"x@{attacker}", [inbox["address"]],
                  message(f"Your Bank <security@{victim}>", inbox["address"], "Verify your account"))
    assert answer.startswith("250 ")
    [stored] = listed(api, inbox["id"])
    assert stored["authentication"] == {"spf": "pass", "dkim": "none", "dmarc": "fail", "from_domain": victim}
    header = results_header(raw_of(running, stored["id"]))
    assert f"spf=pass smtp.mailfrom={attacker}" in header
    assert f"dmarc=fail (p=reject) header.from={victim}" in header

    honest = publish_sender(dns_server, good := domain("honest"))
    send(running, f"a@{good}", [inbox["address"]],
         signed(message(f"a@{good}", inbox["address"], "Verify nothing"), good, honest))
    search = api.get("/v1/search/threads", params={"q": "auth:fail", "inbox_id": inbox["id"]})
    assert search.status_code == 200, search.text
    assert [t["thread_id"] for t in search.json()["data"]] == [stored["thread_id"]]
    words = api.get("/v1/search/threads", params={"q": "verify auth:fail", "inbox_id": inbox["id"]}).json()
    assert [t["thread_id"] for t in words["data"]] == [stored["thread_id"]]
    assert len(api.get("/v1/search/threads", params={"q": "verify", "inbox_id": inbox["id"]}).json()["data"]) == 2
    unknown = api.get("/v1/search/threads", params={"q": "auth:maybe", "inbox_id": inbox["id"]})
    assert unknown.status_code == 400 and "auth:fail" in unknown.json()["error"]


def test_body_changed_after_signing_fails_dkim(running, api, dns_server) -> None:
    sender = domain("tampered")
    key = publish_sender(dns_server, sender)
    inbox = make_inbox(api)
    raw = signed(message(f"billing@{sender}", inbox["address"], "Invoice", "Pay to account 111."), sender, key)
    send(running, f"billing@{sender}", [inbox["address"]], raw.replace(b"account 111", b"account 999"))
    [stored] = listed(api, inbox["id"])
    # SPF still passes for the same domain, so DMARC passes on SPF alone.
    assert stored["authentication"] == {"spf": "pass", "dkim": "fail", "dmarc": "pass", "from_domain": sender}
    assert f"dkim=fail header.d={sender} header.s={SELECTOR}" in results_header(raw_of(running, stored["id"]))


def test_unpublished_key_is_permerror_and_softfail_is_reported(running, api, dns_server) -> None:
    sender = domain("soft")
    key = publish_sender(dns_server, sender, spf="v=spf1 ip4:192.0.2.1 ~all", dmarc="v=DMARC1; p=none")
    dns_server.remove(f"{SELECTOR}._domainkey.{sender}")
    inbox = make_inbox(api)
    send(running, f"news@{sender}", [inbox["address"]],
         signed(message(f"news@{sender}", inbox["address"], "Newsletter"), sender, key))
    [stored] = listed(api, inbox["id"])
    assert stored["authentication"] == {"spf": "softfail", "dkim": "permerror", "dmarc": "fail",
                                        "from_domain": sender}


def test_null_sender_is_checked_against_the_helo_name(running, api, dns_server) -> None:
    helo = domain("relay")
    publish_sender(dns_server, helo, dmarc=None)
    inbox = make_inbox(api)
    send(running, "", [inbox["address"]], message(f"MAILER-DAEMON@{helo}", inbox["address"], "Delivery report"),
         helo=helo)
    [stored] = listed(api, inbox["id"])
    assert stored["authentication"]["spf"] == "pass"
    assert f"spf=pass smtp.helo={helo}" in results_header(raw_of(running, stored["id"]))


def test_dns_timeout_is_temperror_and_the_mail_is_accepted(running, api, dns_server) -> None:
    sender = domain("slow")
    publish_sender(dns_server, sender)
    dns_server.silent.update({sender, f"_dmarc.{sender}"})
    inbox = set_policy(api, make_inbox(api), "reject")
    try:
        answer = send(running, f"ops@{sender}", [inbox["address"]],
                      message(f"ops@{sender}", inbox["address"], "Status"))
    finally:
        dns_server.silent.difference_update({sender, f"_dmarc.{sender}"})
    assert answer.startswith("250 ")
    [stored] = listed(api, inbox["id"])
    assert stored["authentication"] == {"spf": "temperror", "dkim": "none", "dmarc": "temperror",
                                        "from_domain": sender}
    assert stored["labels"] == ["received", "unread"]


def test_reject_setting_refuses_dmarc_failures_of_reject_domains_at_data(running, api, dns_server) -> None:
    victim, quarantining, attacker = domain("ceo"), domain("shop"), domain("spoofer")
    publish_sender(dns_server, victim, spf="v=spf1 -all")
    publish_sender(dns_server, quarantining, spf="v=spf1 -all", dmarc="v=DMARC1; p=quarantine")
    publish_sender(dns_server, attacker, dmarc=None)
    inbox = make_inbox(api)
    assert inbox["reject_unauthenticated"] == "none"
    assert set_policy(api, inbox, "reject")["reject_unauthenticated"] == "reject"
    bad = api.patch(f"/v1/inboxes/{inbox['id']}", json={"reject_unauthenticated": "sometimes"})
    assert bad.status_code == 400 and "reject_unauthenticated" in bad.json()["error"]

    answer = send(running, f"x@{attacker}", [inbox["address"]],
                  message(f"CEO <ceo@{victim}>", inbox["address"], "Urgent transfer"))
    assert answer.startswith("550 5.7.1") and victim in answer
    # The domain asks only for quarantine: the mail is kept, but out of the default lists.
    answer = send(running, f"x@{attacker}", [inbox["address"]],
                  message(f"orders@{quarantining}", inbox["address"], "Order shipped"))
    assert answer.startswith("250 ")
    assert listed(api, inbox["id"]) == []
    [kept] = listed(api, inbox["id"], labels="quarantine")
    assert kept["metadata"]["subject"] == "Order shipped" and kept["labels"] == ["quarantine", "received", "unread"]


def test_mixed_recipients_keep_the_mail_and_quarantine_it_where_it_would_be_refused(running, api, dns_server) -> None:
    victim, attacker = domain("payroll"), domain("mixer")
    publish_sender(dns_server, victim, spf="v=spf1 -all")
    publish_sender(dns_server, attacker, dmarc=None)
    strict = set_policy(api, make_inbox(api), "reject")
    open_inbox = make_inbox(api)
    answer = send(running, f"x@{attacker}", [strict["address"], open_inbox["address"]],
                  message(f"payroll@{victim}", strict["address"], "New bank details"))
    assert answer.startswith("250 ")
    assert [m["labels"] for m in listed(api, open_inbox["id"])] == [["received", "unread"]]
    assert listed(api, strict["id"]) == []
    [kept] = listed(api, strict["id"], labels="quarantine")
    assert kept["authentication"]["dmarc"] == "fail"


def test_quarantined_mail_is_left_out_of_the_default_lists(running, api, dns_server) -> None:
    victim, attacker, friend = domain("it"), domain("phish"), domain("friend")
    publish_sender(dns_server, victim, spf="v=spf1 -all", dmarc="v=DMARC1; p=none")
    publish_sender(dns_server, attacker, dmarc=None)
    friend_key = publish_sender(dns_server, friend)
    inbox = set_policy(api, make_inbox(api), "quarantine")
    honest = signed(message(f"pal@{friend}", inbox["address"], "Lunch"), friend, friend_key)
    assert send(running, f"pal@{friend}", [inbox["address"]], honest).startswith("250 ")
    # Even p=none: the inbox quarantines every DMARC failure. It replies to the honest thread, in vain.
    forged = message(f"helpdesk@{victim}", inbox["address"], "Reset your password")
    forged = forged.replace(b"Subject:", b"In-Reply-To: " + _message_id(honest) + b"\r\nSubject:")
    assert send(running, f"x@{attacker}", [inbox["address"]], forged).startswith("250 ")

    threads = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"]
    assert [t["subject"] for t in threads] == ["Lunch"]
    assert threads[0]["message_count"] == 1
    hidden = api.get("/v1/threads", params={"inbox_id": inbox["id"], "labels": "quarantine"}).json()["data"]
    assert [t["subject"] for t in hidden] == ["Reset your password"]
    by_domain = api.get("/v1/threads", params={"domain_id": inbox["domain_id"], "labels": "quarantine"}).json()
    assert hidden[0]["thread_id"] in [t["thread_id"] for t in by_domain["data"]]
    assert [m["metadata"]["subject"] for m in listed(api, inbox["id"])] == ["Lunch"]
    [quarantined] = listed(api, inbox["id"], labels="quarantine")
    assert quarantined["labels"] == ["quarantine", "received", "unread"]
    assert quarantined["authentication"]["dmarc"] == "fail"
    assert api.get("/v1/search/threads", params={"q": "password", "inbox_id": inbox["id"]}).json()["data"] == []
    found = api.get("/v1/search/threads", params={"q": "password", "inbox_id": inbox["id"], "labels": "quarantine"})
    assert [t["subject"] for t in found.json()["data"]] == ["Reset your password"]
    # Any label can be listed now (labels are general); no thread carries this one.
    spam = api.get("/v1/threads", params={"inbox_id": inbox["id"], "labels": "spam"})
    assert spam.status_code == 200 and spam.json()["data"] == []
    counts = api.get(f"/v1/inboxes/{inbox['id']}").json()["data"]["counts"]
    assert counts == {"threads": 1, "unread_threads": 1, "flagged_threads": 0, "trash_threads": 0}


def _message_id(raw: bytes) -> bytes:
    return raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]


def test_results_header_forged_in_our_name_is_removed(running, api, dns_server) -> None:
    sender = domain("liar")
    publish_sender(dns_server, sender, spf="v=spf1 -all")
    inbox = make_inbox(api)
    forged = (b"Authentication-Results: mx.commune.test;\r\n\tspf=pass smtp.mailfrom=" + sender.encode()
              + b";\r\n\tdmarc=pass\r\nAuthentication-Results: other.example; spf=pass\r\n")
    send(running, f"x@{sender}", [inbox["address"]], forged + message(f"x@{sender}", inbox["address"], "Trust me"))
    [stored] = listed(api, inbox["id"])
    raw = raw_of(running, stored["id"])
    assert raw.count(b"Authentication-Results: mx.commune.test;") == 1
    assert "spf=fail" in results_header(raw) and "dmarc=fail" in results_header(raw)
    assert b"Authentication-Results: other.example; spf=pass" in raw


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


def test_webhook_payload_carries_the_results(running, api, dns_server, receiver) -> None:
    victim, attacker = domain("vendor"), domain("imposter")
    publish_sender(dns_server, victim, spf="v=spf1 -all")
    publish_sender(dns_server, attacker, dmarc=None)
    inbox = make_inbox(api, webhook={"endpoint": receiver.url})
    send(running, f"x@{attacker}", [inbox["address"]], message(f"ar@{victim}", inbox["address"], "New IBAN"))
    payload = json.loads(receiver.wait_for(1)[0].body)
    expected = {"spf": "pass", "dkim": "none", "dmarc": "fail", "from_domain": victim}
    assert payload["authentication"] == expected
    assert payload["message"]["authentication"] == expected
    assert payload["labels"] == ["received", "unread"]
