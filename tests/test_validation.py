"""Recipient validation on send, against a DNS server on 127.0.0.1."""

from __future__ import annotations

import itertools

from tests.mailtools import make_inbox

_domains = itertools.count()


def fresh_domain(label: str) -> str:
    """A domain no other test (or earlier cache entry) has used."""
    return f"{label}{next(_domains)}.valid.test"


def send(api, inbox: dict, *to: str, **extra: object):
    return api.post("/v1/messages/send", json={"to": list(to), "subject": "s", "text": "t",
                                               "inboxId": inbox["id"], **extra})


def test_mx_a_fallback_nxdomain_and_null_mx(running, api, dns_server) -> None:
    inbox = make_inbox(api)
    with_mx, with_a, null_mx, absent = (fresh_domain(n) for n in ("mx", "a", "null", "absent"))
    dns_server.publish(with_mx, "MX", f"10 mail.{with_mx}.")
    dns_server.publish(with_a, "A", "192.0.2.10")
    dns_server.publish(null_mx, "MX", "0 .")
    response = send(api, inbox, f"a@{with_mx}", f"b@{with_a}", f"c@{null_mx}", f"d@{absent}", "not-an-address")
    assert response.status_code == 200, response.text
    validation = response.json()["validation"]
    assert sorted((r["email"], r["reason"]) for r in validation["rejected"]) == [
        (f"c@{null_mx}", "Domain does not accept mail (null MX)"),
        (f"d@{absent}", "No MX records found"),
        ("not-an-address", "Invalid email address"),
    ]
    assert validation["warnings"] == [] and validation["suppressed"] == []
    assert isinstance(validation["duration_ms"], int)
    queued = running.run(lambda: [r[0] for r in running.server.services.database.query(
        "SELECT recipient FROM outbound_queue WHERE message_id = ? ORDER BY recipient",
        (response.json()["data"]["id"],))])
    assert queued == [f"a@{with_mx}", f"b@{with_a}"]


def test_nobody_left_is_a_400_that_says_why(running, api) -> None:
    inbox = make_inbox(api)
    response = send(api, inbox, f"x@{fresh_domain('gone')}", "nobody@commune.localhost")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "No MX records found" in error and "No such inbox on this server" in error


def test_paused_and_disabled_local_inboxes_are_rejected(running, api) -> None:
    inbox, paused, disabled, open_ = (make_inbox(api) for _ in range(4))
    assert api.patch(f"/v1/inboxes/{paused['id']}", json={"status": "paused"}).status_code == 200
    assert api.patch(f"/v1/inboxes/{disabled['id']}", json={"status": "disabled"}).status_code == 200
    response = send(api, inbox, paused["address"], disabled["address"], open_["address"])
    assert response.status_code == 200
    assert response.json()["validation"]["rejected"] == [
        {"email": paused["address"], "reason": "Mailbox temporarily unavailable"},
        {"email": disabled["address"], "reason": "Mailbox disabled"},
    ]
    for target, count in [(paused, 0), (disabled, 0), (open_, 1)]:
        listed = api.get("/v1/messages", params={"inbox_id": target["id"]}).json()["data"]
        assert len(listed) == count, target["address"]


def test_disposable_domains_warn_and_still_send(running, api, dns_server) -> None:
    inbox = make_inbox(api)
    dns_server.publish("mailinator.com", "MX", "10 mail.mailinator.com.")
    response = send(api, inbox, "someone@mailinator.com")
    assert response.status_code == 200
    body = response.json()
    assert body["validation"]["warnings"] == [{"email": "someone@mailinator.com", "reason": "Disposable email domain"}]
    assert body["data"]["status"] == "queued"


def test_suppressed_addresses_are_skipped(running, api, dns_server) -> None:
    inbox = make_inbox(api)
    domain = fresh_domain("supp")
    dns_server.publish(domain, "MX", f"10 mx.{domain}.")
    services = running.server.services

    def suppress() -> None:
        org_id = services.domains.get_inbox_any(inbox["id"])["org_id"]
        with services.database.transaction() as conn:
            conn.execute("INSERT INTO suppressions (id, org_id, email, reason, created_at)"
                         " VALUES ('sup_t1', ?, ?, 'hard_bounce', '2025-01-01T00:00:00.000Z')",
                         (org_id, f"bounced@{domain}"))

    running.run(suppress)
    response = send(api, inbox, f"bounced@{domain}", f"fine@{domain}")
    assert response.json()["validation"]["suppressed"] == [f"bounced@{domain}"]
    only = send(api, inbox, f"Bounced@{domain}")
    assert only.status_code == 400 and "suppressed" in only.json()["error"]
    with running.client(running.new_key()) as stranger:
        theirs = make_inbox(stranger)
        assert "validation" not in send(stranger, theirs, f"bounced@{domain}").json()


def test_answers_are_cached_and_timeouts_only_warn(running, api, dns_server) -> None:
    inbox = make_inbox(api)
    cached = fresh_domain("cached")
    dns_server.publish(cached, "MX", f"10 mx.{cached}.")
    assert "validation" not in send(api, inbox, f"a@{cached}").json()
    dns_server.remove(cached)
    assert "validation" not in send(api, inbox, f"b@{cached}").json()

    slow = fresh_domain("slow")
    dns_server.silent.add(slow)
    try:
        response = send(api, inbox, f"c@{slow}")
    finally:
        dns_server.silent.discard(slow)
    assert response.status_code == 200
    [warning] = response.json()["validation"]["warnings"]
    assert warning["email"] == f"c@{slow}" and "MX lookup" in warning["reason"]
