"""Lists keep creation order for rows written in the same millisecond, page after page."""

from __future__ import annotations

import itertools

from tests.conftest import Running

_orgs = itertools.count()
BURST = 200


def new_org(running: Running) -> tuple[str, str]:
    """A fresh organisation's id and an admin key for it."""
    name = f"ordering-org-{next(_orgs)}"
    key = running.new_key(["admin", "read", "write"], org=name)
    services = running.server.services
    return running.run(lambda: services.orgs.get_or_create_org(name)["id"]), key


def every_page(running: Running, key: str, path: str, params: dict) -> list[dict]:
    """Everything a client sees walking the list with `next_cursor`, in the order it sees it."""
    seen: list[dict] = []
    cursor = None
    with running.client(key) as api:
        while True:
            body = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})}).json()
            seen += body["data"]
            if not body["has_more"]:
                return seen
            cursor = body["next_cursor"]


def test_audit_entries_written_in_one_burst_list_newest_first_in_creation_order(running: Running) -> None:
    org_id, key = new_org(running)
    audit = running.server.services.audit

    def burst() -> None:
        for n in range(BURST):
            audit.record(org_id, None, "test.burst", "entry", str(n))

    running.run(burst)
    listed = every_page(running, key, "/v1/audit-logs", {"action": "test.burst", "limit": 30})
    assert [entry["target_id"] for entry in listed] == [str(n) for n in reversed(range(BURST))]


def test_suppressions_added_in_one_burst_list_newest_first_in_creation_order(running: Running) -> None:
    org_id, key = new_org(running)
    delivery = running.server.services.delivery

    def burst() -> None:
        for n in range(BURST):
            delivery.add_suppression(org_id, f"user{n}@burst.test", "manual")

    running.run(burst)
    listed = every_page(running, key, "/v1/delivery/suppressions", {"limit": 30})
    assert [item["email"] for item in listed] == [f"user{n}@burst.test" for n in reversed(range(BURST))]


def test_api_keys_created_in_one_burst_list_in_creation_order(running: Running) -> None:
    org_id, key = new_org(running)
    keys = running.server.services.keys

    def burst() -> list[str]:
        return [keys.create(org_id, ["read"], f"burst-{n}")[1].id for n in range(50)]

    created = running.run(burst)
    with running.client(key) as api:
        listed = [k["id"] for k in api.get("/v1/agent/api-keys").json()["data"]]
    assert [k for k in listed if k in set(created)] == created
