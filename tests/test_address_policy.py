"""Outbound connections go only where the operator allows: webhooks and direct MX refuse private addresses.

The servers here run with the safe defaults of `commune-server serve` unless a test says otherwise;
the receivers and the SMTP sink listen on loopback, so anything that reaches them went through.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from backend.dns.resolver import make_resolver
from backend.netpolicy import classify
from backend.webhooks.targets import RefusedTarget, vet
from commune_tui.embedded import start_embedded
from tests.conftest import start_server
from tests.mailtools import make_inbox
from tests.server_process import ServerProcess
from tests.smtp_sink import SmtpSink
from tests.waiting import wait_until
from tests.webhook_receiver import WebhookReceiver

PRIVATE_ANSWER = b"internal service: admin token 5f3a9c"
"""What a private service answers; it must never reach a tenant."""

SAFE_DEFAULTS = {"COMMUNE_WEBHOOK_ALLOW_PRIVATE": "", "COMMUNE_DELIVERY_ALLOW_PRIVATE": ""}
"""Empty values leave the defaults of `commune-server serve` in force whatever the test's environment."""


@pytest.mark.parametrize("address, kind", [
    ("93.184.216.34", None),
    ("8.8.8.8", None),
    ("2606:4700::1111", None),
    ("2a00:1450:4001:80b::200e", None),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.0.9", "private"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "link-local"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.200", "documentation"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.1", "benchmarking"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::7f00:1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("::ffff:127.0.0.1", "loopback in IPv4-mapped"),
    ("::ffff:10.0.0.1", "private in IPv4-mapped"),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::7f00:1", "loopback in NAT64"),
    ("64:ff9b::a9fe:a9fe", "link-local in NAT64"),
    ("64:ff9b::808:808", None),
    ("64:ff9b:1::7f00:1", "local-use NAT64"),
    ("2002:7f00:1::1", "loopback in 6to4"),
    ("2002:c0a8:1::1", "private in 6to4"),
    ("2002:808:808::1", None),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:2::1", "IETF protocol assignment"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard-only"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("5f00::1", "reserved"),
    ("4000::1", "reserved"),
    ("::2", "IPv4-compatible"),
])
def test_address_classes(address: str, kind: str | None) -> None:
    assert classify(address) == kind


def test_a_webhook_host_is_pinned_to_its_vetted_address_and_refused_if_any_address_is_private(dns_server) -> None:
    dns_server.publish("public.vet.test", "A", "93.184.216.34")
    dns_server.publish("mixed.vet.test", "A", "93.184.216.34", "127.0.0.1")
    dns_server.publish("mixed.vet.test", "AAAA", "2606:4700::1111")
    resolver = make_resolver([dns_server.address])

    target = asyncio.run(vet("https://public.vet.test:8443/hook?x=1", resolver, allow_private=False))
    assert str(target.url) == "https://93.184.216.34:8443/hook?x=1"
    assert target.headers == {"host": "public.vet.test:8443"}
    assert target.extensions == {"sni_hostname": "public.vet.test"}
    with pytest.raises(RefusedTarget, match=r"^refused: endpoint mixed\.vet\.test resolves to a private "
                                            r"address 127\.0\.0\.1 \(loopback\)$"):
        asyncio.run(vet("https://mixed.vet.test/hook", resolver, allow_private=False))


def smtp_to(port: int, address: str, subject: str) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "bob@example.net", address, subject
    mail.set_content("hello")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(mail)


def test_serve_refuses_webhooks_to_private_addresses_by_default(tmp_path: Path, dns_server, engine) -> None:
    dns_server.publish("loop4.hooks-policy.test", "A", "127.0.0.1")
    dns_server.publish("loop6.hooks-policy.test", "AAAA", "::1")
    dns_server.publish("nat64.hooks-policy.test", "AAAA", "64:ff9b::7f00:1")
    dns_server.publish("lan.hooks-policy.test", "A", "10.20.30.40")
    v4 = WebhookReceiver(default=(500, PRIVATE_ANSWER, {}))  # type: ignore[arg-type]
    v6 = WebhookReceiver(default=(500, PRIVATE_ANSWER, {}), host="::1")  # type: ignore[arg-type]
    port4, port6 = v4.httpd.server_address[1], v6.httpd.server_address[1]
    # Plainly private endpoints: refused when configured, and at delivery if stored earlier.
    literal = {
        v4.url: "refused: endpoint is a private address 127.0.0.1 (loopback)",
        v6.url: "refused: endpoint is a private address ::1 (loopback)",
        f"http://0.0.0.0:{port4}/hook": "refused: endpoint is a private address 0.0.0.0 (unspecified)",
        f"http://[::ffff:127.0.0.1]:{port4}/hook":
            "refused: endpoint is a private address ::ffff:7f00:1 (loopback in IPv4-mapped)",
        f"http://localhost:{port4}/hook": "refused: endpoint localhost is a loopback name",
    }
    # Names are only known to be private once resolved, at delivery.
    named = {
        f"http://loop4.hooks-policy.test:{port4}/hook":
            "refused: endpoint loop4.hooks-policy.test resolves to a private address 127.0.0.1 (loopback)",
        f"http://loop6.hooks-policy.test:{port6}/hook":
            "refused: endpoint loop6.hooks-policy.test resolves to a private address ::1 (loopback)",
        f"http://nat64.hooks-policy.test:{port4}/hook": "refused: endpoint nat64.hooks-policy.test resolves "
                                                        "to a private address 64:ff9b::7f00:1 (loopback in NAT64)",
        f"http://lan.hooks-policy.test:{port4}/hook":
            "refused: endpoint lan.hooks-policy.test resolves to a private address 10.20.30.40 (private)",
    }
    expected = {**literal, **named}
    # The inboxes with literal endpoints date from a run that allowed private targets.
    server = ServerProcess(tmp_path, "--dns-servers", dns_server.address,
                           env={**SAFE_DEFAULTS, "COMMUNE_WEBHOOK_ALLOW_PRIVATE": "true"}, engine=engine)
    try:
        server.start()
        with server.client() as client:
            earlier = [make_inbox(client, webhook={"endpoint": endpoint}) for endpoint in literal]
        server.stop()
        server.env.update(SAFE_DEFAULTS)
        server.start()
        with server.client() as client:
            refused = {endpoint: client.post("/v1/inboxes", json={"local_part": f"refused{n}",
                                                                  "webhook": {"endpoint": endpoint}})
                       for n, endpoint in enumerate(literal)}
            inboxes = earlier + [make_inbox(client, webhook={"endpoint": endpoint}) for endpoint in named]
            repointed = client.patch(f"/v1/inboxes/{inboxes[-1]['id']}", json={"webhook": {"endpoint": v4.url}})
            for inbox in inboxes:
                smtp_to(server.smtp_port, inbox["address"], f"to {inbox['webhook']['endpoint']}")
            listed = wait_until(lambda: client.get("/v1/webhooks/deliveries", params={"limit": 50}).json(),
                                lambda b: len(b["data"]) == len(expected)
                                and all(d["status"] == "failed" for d in b["data"]))
            details = [client.get(f"/v1/webhooks/deliveries/{d['id']}").json()["data"] for d in listed["data"]]
    finally:
        server.stop()
        v4.close()
        v6.close()
    assert {e: (r.status_code, r.json()["error"]) for e, r in refused.items()} == {
        e: (400, reason) for e, reason in literal.items()}
    assert repointed.status_code == 400 and repointed.json()["error"] == literal[v4.url]
    assert {d["endpoint"]: d["lastError"] for d in details} == expected
    assert all(d["status"] == "failed" and d["attemptCount"] == 1 for d in details)
    assert all(d["attempts"][0]["http_status"] is None for d in details)
    assert PRIVATE_ANSWER.decode() not in json.dumps(details)
    assert v4.requests == [] and v6.requests == []


def test_with_private_targets_allowed_webhooks_arrive_but_a_private_answer_is_not_shown(tmp_path: Path,
                                                                                        dns_server, engine) -> None:
    receiver = WebhookReceiver()
    receiver.plan = [(500, PRIVATE_ANSWER, {})]
    server = start_server(tmp_path, dns_server, webhook_allow_private=True, webhook_backoff=0.2, engine=engine)
    try:
        with server.client(server.new_key()) as client:
            inbox = make_inbox(client, webhook={"endpoint": receiver.url})
            smtp_to(server.server.smtp_port, inbox["address"], "to my own machine")
            hits = receiver.wait_for(2)
            delivery_id = hits[0].headers["x-commune-delivery-id"]
            shown = wait_until(lambda: client.get(f"/v1/webhooks/deliveries/{delivery_id}").json()["data"],
                               lambda d: d["status"] == "success")
    finally:
        server.stop()
        receiver.close()
    assert json.loads(hits[-1].body)["subject"] == "to my own machine"
    assert shown["status"] == "success"
    assert shown["attempts"][0]["http_status"] == 500 and shown["attempts"][0]["error"] == "HTTP 500"
    assert PRIVATE_ANSWER.decode() not in json.dumps(shown)


def test_the_embedded_server_lets_webhooks_reach_this_machine_and_says_so(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    embedded = start_embedded(tmp_path / "embedded")
    try:
        with httpx.Client(base_url=embedded.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {embedded.api_key}"}) as client:
            inbox = make_inbox(client, webhook={"endpoint": receiver.url})
            smtp_to(embedded.smtp_port, inbox["address"], "local hook")
            hit = receiver.wait_for(1)[0]
    finally:
        embedded.stop()
        receiver.close()
    assert json.loads(hit.body)["subject"] == "local hook"
    log = (tmp_path / "embedded" / "server.log").read_text()
    assert log.count("webhooks may reach loopback and private addresses") == 1


def send(client: httpx.Client, **body: object) -> dict:
    response = client.post("/v1/messages/send", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_serve_refuses_direct_delivery_to_private_mail_hosts_by_default(tmp_path: Path, dns_server, engine) -> None:
    zone = "mx-policy.test"
    dns_server.publish(f"loop.{zone}", "MX", f"10 mx.loop.{zone}.")
    dns_server.publish(f"mx.loop.{zone}", "A", "127.0.0.1")
    dns_server.publish(f"v6.{zone}", "MX", f"10 mx.v6.{zone}.")
    dns_server.publish(f"mx.v6.{zone}", "AAAA", "::1")
    dns_server.publish(f"nat64.{zone}", "MX", f"10 mx.nat64.{zone}.")
    dns_server.publish(f"mx.nat64.{zone}", "AAAA", "64:ff9b::7f00:1")
    dns_server.publish(f"named.{zone}", "MX", "10 localhost.")
    dns_server.publish(f"implicit.{zone}", "A", "127.0.0.1")
    dns_server.publish(f"two.{zone}", "MX", f"10 a.two.{zone}.", f"20 b.two.{zone}.")
    dns_server.publish(f"a.two.{zone}", "A", "10.0.0.25")
    dns_server.publish(f"b.two.{zone}", "A", "127.0.0.1")
    expected = {
        f"ann@loop.{zone}": f"MX host mx.loop.{zone} resolves only to private addresses: 127.0.0.1 (loopback); refused",
        f"bo@v6.{zone}": f"MX host mx.v6.{zone} resolves only to private addresses: ::1 (loopback); refused",
        f"cy@nat64.{zone}": f"MX host mx.nat64.{zone} resolves only to private addresses: "
                            "64:ff9b::7f00:1 (loopback in NAT64); refused",
        f"di@named.{zone}": "MX host localhost resolves only to private addresses: a loopback name; refused",
        f"ed@implicit.{zone}": f"MX host implicit.{zone} resolves only to private addresses: "
                               "127.0.0.1 (loopback); refused",
        f"flo@two.{zone}": f"MX hosts resolve only to private addresses (a.two.{zone}: 10.0.0.25 (private); "
                           f"b.two.{zone}: 127.0.0.1 (loopback)); refused",
    }
    sink = SmtpSink().start()
    server = ServerProcess(tmp_path, "--dns-servers", dns_server.address,
                           env={**SAFE_DEFAULTS, "COMMUNE_SMTP_DIRECT_PORT": str(sink.port)}, engine=engine)
    try:
        server.start()
        with server.client() as client:
            inbox = make_inbox(client)
            sent = send(client, to=list(expected), subject="Into the LAN", text="hi", inboxId=inbox["id"])
            found = wait_until(
                lambda: client.get("/v1/delivery/events", params={"message_id": sent["id"], "limit": 100}).json(),
                lambda b: {e["recipient"] for e in b["data"] if e["event_type"] == "failed"} == set(expected))
            suppressed = client.get("/v1/delivery/suppressions").json()["data"]
    finally:
        server.stop()
        sink.stop()
    failed = {e["recipient"]: e["detail"] for e in found["data"] if e["event_type"] == "failed"}
    assert failed == expected
    assert sink.received == [] and sink.handler.greetings == 0
    assert "sink" not in json.dumps(found) and "SMTP" not in json.dumps(found)
    assert suppressed == []  # the server's own policy says nothing about the addresses
