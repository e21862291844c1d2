"""The caller's organisation and its API keys, as the official CLI's `config` and `doctor` read them."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..auth import DEFAULT_SCOPES, validate_scopes
from ..http.errors import Conflict, NotFound
from ..http.router import Route
from ..models.addressing import Strict
from ..store.orgs import ApiKeyRecord, LastAdminKey
from ._common import Context, data, parse_body


class CreateKey(Strict):
    name: str = Field("", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES), max_length=32)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return validate_scopes(list(dict.fromkeys(value)))


def key_json(record: ApiKeyRecord) -> dict[str, Any]:
    """A key as listed: never the secret, only the prefix it starts with."""
    return {
        "id": record.id,
        "name": record.name,
        "keyPrefix": record.prefix,
        "scopes": list(record.scopes),
        "status": "revoked" if record.revoked_at else "active",
        "lastUsedAt": record.last_used_at,
        "createdAt": record.created_at,
        "revokedAt": record.revoked_at,
    }


async def get_org(ctx: Context) -> dict:
    org = ctx.services.orgs.get_org(ctx.org_id)
    if org is None:
        raise NotFound("Organisation not found")
    body = {
        "id": org["id"],
        "name": org["name"],
        "tier": org["tier"],
        "status": org["status"],
        "createdAt": org["created_at"],
    }
    # The CLI reads these fields at the top level; SDK-style clients unwrap `data`.
    return {**body, "data": body}


async def list_keys(ctx: Context) -> dict:
    keys = ctx.services.orgs.list_keys(ctx.org_id)
    return {**data([key_json(k) for k in keys]), "has_more": False, "next_cursor": None}


async def create_key(ctx: Context) -> tuple[int, dict]:
    body = parse_body(ctx.request, CreateKey)
    secret, record = ctx.services.keys.create(ctx.org_id, body.scopes, body.name)
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "key.created", "api_key", record.id,
                              {"scopes": body.scopes, "name": body.name})
    return 201, data({**key_json(record), "key": secret})


async def revoke_key(ctx: Context) -> dict:
    key_id = ctx.params["key_id"]
    record = ctx.services.orgs.get_key(ctx.org_id, key_id)
    if record is None:
        raise NotFound("API key not found")
    try:
        revoked = ctx.services.orgs.revoke_key(ctx.org_id, key_id)
    except LastAdminKey as exc:
        raise Conflict(str(exc)) from exc
    if revoked:
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "key.revoked", "api_key", key_id,
                                  {"name": record.name})
    # Keys are cached for a few seconds; a revocation must take effect on the next request.
    ctx.services.keys.forget()
    return data({"ok": True, "id": key_id, "status": "revoked", "revoked": True})


ROUTES = [
    Route("GET", "/v1/agent/org", get_org, "read", "The caller's organisation"),
    Route("GET", "/v1/agent/api-keys", list_keys, "admin", "List the organisation's API keys"),
    Route("POST", "/v1/agent/api-keys", create_key, "admin", "Create an API key (shown once)"),
    Route("DELETE", "/v1/agent/api-keys/{key_id}", revoke_key, "admin", "Revoke an API key"),
]
