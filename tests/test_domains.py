"""Domains: shapes as in the reference, DNS records, and verification against a real DNS server."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives import serialization


def test_create_get_list_domain_shapes(api) -> None:
    created = api.post("/v1/domains", json={"name": "Shapes.Example", "region": "eu-west-1"})
    assert created.status_code == 201
    domain = created.json()["data"]
    assert domain["name"] == "shapes.example"
    assert domain["status"] == "not_started" and domain["region"] == "eu-west-1"
    got = api.get(f"/v1/domains/{domain['id']}").json()["data"]
    assert got["id"] == domain["id"] and got["inboxes"] == []
    assert {r["record"] for r in got["records"]} == {"DKIM", "SPF", "Receiving", "Ownership", "DMARC"}
    listed = api.get("/v1/domains").json()["data"]
    assert [d["id"] for d in listed] == [domain["id"]]


def test_cli_style_domain_field_and_validation_errors(api) -> None:
    assert api.post("/v1/domains", json={"domain": "cli-style.example"}).status_code == 201
    duplicate = api.post("/v1/domains", json={"name": "cli-style.example"})
    assert duplicate.status_code == 409
    for body, field in [({}, "name"), ({"name": 42}, "name"), ({"name": "not a domain"}, "name"),
                        ({"name": "-bad-.example"}, "name")]:
        response = api.post("/v1/domains", json=body)
        assert response.status_code == 400, body
        assert field in response.json()["error"]
    assert api.post("/v1/domains", content=b"[1,2]").status_code == 400


def test_records_carry_a_dkim_key_that_is_a_real_rsa_public_key(api) -> None:
    domain = api.post("/v1/domains", json={"name": "dkim-shape.example"}).json()["data"]
    records = api.get(f"/v1/domains/{domain['id']}/records").json()["data"]
    dkim = next(r for r in records if r["record"] == "DKIM")
    assert dkim["name"] == "commune._domainkey.dkim-shape.example" and dkim["type"] == "TXT"
    public = dkim["value"].split("p=")[1]
    key = serialization.load_der_public_key(base64.b64decode(public))
    assert key.key_size == 2048
    receiving = next(r for r in records if r["record"] == "Receiving")
    assert receiving == {"record": "Receiving", "name": "dkim-shape.example", "type": "MX",
                         "value": "mx.commune.test", "priority": 10, "status": "pending", "ttl": "Auto"}


def test_verification_moves_from_pending_to_failed_to_verified(api, dns_server) -> None:
    # A name of its own: the DNS server is shared by the session (and by this test on each engine).
    domain = api.post("/v1/domains", json={"name": f"verify-me-{uuid.uuid4().hex[:8]}.example"}).json()["data"]
    records = api.get(f"/v1/domains/{domain['id']}/records").json()["data"]

    result = api.post(f"/v1/domains/{domain['id']}/verify").json()["data"]
    assert result["status"] == "pending"

    for record in records:  # publish everything, but the DKIM key wrong
        value = record["value"]
        if record["type"] == "MX":
            dns_server.publish(record["name"], "MX", f"10 {value}.")
        elif record["record"] == "DKIM":
            dns_server.publish(record["name"], "TXT", '"v=DKIM1; k=rsa; p=AAAA"')
        else:
            dns_server.publish(record["name"], "TXT", f'"{value}"')
    result = api.post(f"/v1/domains/{domain['id']}/verify").json()["data"]
    assert result["status"] == "failed"
    statuses = {r["record"] + r["type"]: r["status"] for r in result["records"]}
    assert statuses == {"DKIMTXT": "failed", "SPFMX": "verified", "SPFTXT": "verified",
                        "ReceivingMX": "verified", "OwnershipTXT": "verified", "DMARCTXT": "verified"}

    dkim = next(r for r in records if r["record"] == "DKIM")
    value = dkim["value"]
    chunks = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))  # long TXT split in strings
    dns_server.publish(dkim["name"], "TXT", chunks)
    assert api.post(f"/v1/domains/{domain['id']}/verify").json()["data"]["status"] == "verified"
    got = api.get(f"/v1/domains/{domain['id']}").json()["data"]
    assert got["status"] == "verified"
    assert all(r["status"] == "verified" for r in got["records"])


@pytest.mark.parametrize("path", ["", "/records", "/inboxes"])
def test_another_organisations_domain_is_404(running, api, path: str) -> None:
    domain = api.post("/v1/domains", json={"name": f"private-{uuid.uuid4().hex[:8]}.example"}).json()["data"]
    with running.client(running.new_key()) as stranger:
        response = stranger.get(f"/v1/domains/{domain['id']}{path}")
        assert response.status_code == 404
        assert response.json() == {"error": "Domain not found"}
        assert stranger.post(f"/v1/domains/{domain['id']}/verify").status_code == 404
        assert stranger.get("/v1/domains").json() == {"data": []}
