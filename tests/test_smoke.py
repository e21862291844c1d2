"""The server starts on free ports, answers health without a key and lists domains with one."""

from __future__ import annotations


def test_health_needs_no_key(running) -> None:
    with running.client(key="") as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_admin_key_lists_the_shared_domain_only_once_it_has_inboxes(running, api) -> None:
    assert api.get("/v1/domains").json() == {"data": []}
    created = api.post("/v1/inboxes", json={"local_part": "hello"})
    assert created.status_code == 201
    names = [d["name"] for d in api.get("/v1/domains").json()["data"]]
    assert names == ["commune.localhost"]
