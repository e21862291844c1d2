"""The caller's organisation and its API keys, as the official CLI's `config` and `doctor` read them."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, field_validator

from ..auth import DEFAULT_SCOPES, validate_scopes
from ..http.errors import Conflict, NotFound
from ..http.router import Route
from ..models.addressing import Strict
from ..store.orgs import ApiKeyRecord, LastAdminKey
from ._common import Context, data, parse_body, store_work


class CreateKey(Strict):
    name: str = Field("", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES), max_length=32)
    hold_sends: bool = Field(False, validation_alias=AliasChoices("hold_sends", "holdSends"))
    """Every send with the key waits for a person's approval (for an agent's key)."""

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return validate_scopes(list(dict.fromkeys(value)))


class UpdateKey(Strict):
    hold_sends: bool | None = Field(None, validation_alias=AliasChoices("hold_sends", "holdSends"))


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
        "hold_sends": record.hold_sends,
    }


@store_work
def get_org(ctx: Context) -> dict:
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


@store_work
def list_keys(ctx: Context) -> dict:
    keys = ctx.services.orgs.list_keys(ctx.org_id)
    return {**data([key_json(k) for k in keys]), "has_more": False, "next_cursor": None}


@store_work
def create_key(ctx: Context) -> tuple[int, dict]:
    body = parse_body(ctx.request, CreateKey)
    secret, record = ctx.services.keys.create(ctx.org_id, body.scopes, body.name, body.hold_sends)
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "key.created", "api_key", record.id,
                              {"scopes": body.scopes, "name": body.name, "hold_sends": body.hold_sends})
    return 201, data({**key_json(record), "key": secret})


@store_work
def update_key(ctx: Context) -> dict:
    """`PATCH /v1/agent/api-keys/{id}`: set `hold_sends`. Another organisation's key is a 404 whatever the body."""
    record = ctx.services.orgs.get_key(ctx.org_id, ctx.params["key_id"])
    if record is None:
        raise NotFound("API key not found")
    body = parse_body(ctx.request, UpdateKey)
    if body.hold_sends is not None and body.hold_sends != record.hold_sends:
        record = ctx.services.orgs.set_hold_sends(ctx.org_id, record.id, body.hold_sends)  # type: ignore[assignment]
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "key.updated", "api_key", record.id,
                                  {"hold_sends": body.hold_sends})
        # Keys are cached for a few seconds; the change must hold from the next request on.
        ctx.services.keys.forget()
    return data(key_json(record))


@store_work
def revoke_key(ctx: Context) -> dict:
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
    Route("PATCH", "/v1/agent/api-keys/{key_id}", update_key, "admin", "Change an API key (hold_sends)"),
    Route("DELETE", "/v1/agent/api-keys/{key_id}", revoke_key, "admin", "Revoke an API key"),
]
