"""Scope matrix over the live route table: every authenticated route refuses a key holding every scope
except the one it needs (403) and a request without a key (401); public routes are listed by name."""

from __future__ import annotations

import httpx
import pytest

from backend.api import all_routes
from backend.auth import ALL_SCOPES, expand_scopes, has_scope
from backend.http.router import PARAM, Route

# Routes anyone may call without a key, each with the reason it is safe.
PUBLIC = {
    ("GET", "/health"): "liveness probe, no data",
    ("GET", "/v1/health"): "liveness probe, no data",
    ("GET", "/v1/attachments/{attachment_id}/download"): "the signed, expiring URL is the credential",
    ("GET", "/v1/openapi.json"): "the API description, no tenant data",
}

ROUTES = all_routes()


def route_id(route: Route) -> str:
    return f"{route.method} {route.template}"


def path_of(route: Route) -> str:
    return PARAM.sub("x-not-an-id", route.template)


def status_of(client: httpx.Client, route: Route) -> int:
    """Status only: streams (SSE) are closed after the headers; long polls are told not to wait."""
    body = None if route.method in ("GET", "DELETE") else {}
    with client.stream(route.method, path_of(route), params={"timeout": "0"}, json=body) as response:
        return response.status_code


def without(needed: str) -> list[str]:
    """Every scope a key can hold except those that would grant `needed` (admin grants everything)."""
    return [s for s in ALL_SCOPES if not has_scope(expand_scopes([s]), needed)]


@pytest.fixture(scope="module")
def keys(running) -> dict:
    """Per needed scope: a key with all the other scopes, and a key with just that scope."""
    made: dict[str, tuple[str, str]] = {}
    for scope in {r.scope for r in running.server.app.routes if r.scope is not None}:
        made[scope] = (running.new_key(without(scope)), running.new_key([scope]))
    return made


def test_the_matrix_covers_the_live_route_table(running) -> None:
    live = {route_id(r) for r in running.server.app.routes}
    assert live == {route_id(r) for r in ROUTES}
    public = {(r.method, r.template) for r in running.server.app.routes if r.scope is None}
    assert public == set(PUBLIC), "a public route must be listed in PUBLIC with its reason"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope is not None], ids=route_id)
def test_route_refuses_keys_without_its_scope(running, keys, route: Route) -> None:
    others, only = keys[route.scope]
    assert not has_scope(expand_scopes(others), route.scope)
    with running.client(others) as client:
        assert status_of(client, route) == 403
    with running.client("") as anonymous:
        assert status_of(anonymous, route) == 401
    with running.client(only) as client:
        assert status_of(client, route) not in (401, 403), "the route must accept its own scope"


# Which scopes a path family may declare: the matrix above proves a route checks its declared scope,
# this proves the declared scope fits the route (GET reads, anything else writes).
FAMILIES = {
    "/v1/domains": ("domains", "inboxes"), "/v1/inboxes": ("inboxes",),
    # Deleting a thread deletes its messages, so it asks for `messages:write` (issue 14).
    "/v1/threads": ("threads", "messages"),
    "/v1/search": ("threads",), "/v1/events": ("threads",), "/v1/messages": ("messages",),
    "/v1/attachments": ("attachments",), "/v1/contacts": ("messages",), "/v1/delivery": ("delivery",),
    "/v1/webhooks": ("webhooks",), "/v1/dmarc": ("domains",), "/v1/drafts": ("drafts",),
    "/v1/approvals": ("messages",), "/v1/outbox": ("messages",),
}
SPECIAL = {"/v1/data/": "data:delete", "/v1/audit-logs": "admin", "/v1/agent/api-keys": "admin",
           "/v1/agent/org": "read", "/v1/messages/{message_id}/approve": "approvals:write",
           "/v1/messages/{message_id}/reject": "approvals:write"}


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope is not None], ids=route_id)
def test_declared_scope_fits_the_route(route: Route) -> None:
    special = [scope for prefix, scope in SPECIAL.items() if route.template.startswith(prefix)]
    if special:
        assert route.scope == special[0]
        return
    family = [names for prefix, names in FAMILIES.items() if route.template.startswith(prefix)]
    assert family, f"{route_id(route)}: add its path family to FAMILIES with the scopes it may need"
    resource, _, action = route.scope.partition(":")
    assert resource in family[0]
    assert action == ("read" if route.method == "GET" else "write")
