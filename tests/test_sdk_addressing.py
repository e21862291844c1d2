"""The official SDK (commune-mail 0.3.4), unmodified, manages domains and inboxes on our server."""

from __future__ import annotations

import uuid

import pytest
from commune import CommuneClient
from commune.exceptions import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)


@pytest.fixture
def sdk(running):
    client = CommuneClient(api_key=running.new_key(), base_url=running.url)
    yield client
    client.close() if hasattr(client, "close") else None


def test_sdk_domains_and_inboxes_round_trip(sdk, dns_server) -> None:
    name = f"sdk-{uuid.uuid4().hex[:8]}.example"
    domain = sdk.domains.create(name)
    assert domain.name == name and domain.status == "not_started"
    assert [d.id for d in sdk.domains.list()] == [domain.id]
    assert sdk.domains.get(domain.id).id == domain.id
    records = sdk.domains.records(domain.id)
    assert {r.record for r in records} == {"DKIM", "SPF", "Receiving", "Ownership", "DMARC"}
    for record in records:
        if record.type == "MX":
            dns_server.publish(record.name, "MX", f"{record.priority} {record.value}.")
        else:
            dns_server.publish(record.name, "TXT", f'"{record.value}"')
    assert sdk.domains.verify(domain.id).status == "verified"

    inbox = sdk.inboxes.create("support", domain_id=domain.id, name="Support")
    assert inbox.address == f"support@{name}" and inbox.local_part == "support"
    assert [i.id for i in sdk.inboxes.list(domain.id)] == [inbox.id]
    assert [i.id for i in sdk.inboxes.list()] == [inbox.id]
    assert sdk.inboxes.get(domain.id, inbox.id).display_name == "Support"

    renamed = sdk.inboxes.update(domain.id, inbox.id, local_part="help")
    assert renamed.address == f"help@{name}"
    hooked = sdk.inboxes.set_webhook(domain.id, inbox.id, endpoint="https://hooks.example/x")
    assert hooked.webhook.endpoint == "https://hooks.example/x"
    assert hooked.webhook.secret.startswith("whsec_")
    assert sdk.inboxes.remove(domain.id, inbox.id) is True
    with pytest.raises(NotFoundError):
        sdk.inboxes.get(domain.id, inbox.id)


def test_sdk_simplified_inbox_and_error_mapping(running, sdk) -> None:
    inbox = sdk.inboxes.create(f"agent-{uuid.uuid4().hex[:6]}")
    assert inbox.domain_name == "commune.localhost" and inbox.id
    with pytest.raises(ValidationError) as bad:
        sdk.inboxes.create("not valid")
    assert "local_part" in str(bad.value)
    with pytest.raises(NotFoundError):
        sdk.domains.get(str(uuid.uuid4()))
    with pytest.raises(AuthenticationError):
        CommuneClient(api_key="comm_wrong", base_url=running.url).domains.list()
    with pytest.raises(PermissionDeniedError):
        CommuneClient(api_key=running.new_key(["inboxes:read"]), base_url=running.url).domains.list()
