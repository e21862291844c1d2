"""Two-phase data deletion: a request with an exact preview and a signed token, then a confirmation.

The token is an HMAC over the request id, the organisation and the expiry (`confirm_by`), so nothing
secret is stored: it cannot be guessed, moved to another request or organisation, or used late.
The official CLI's confirm sends no token; that call stays unsupported on purpose (400).
The CLI's request sends no `scope` either: `inboxId`, `domainId` or `email` alone names it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ..delivery.validation import normalise_address
from ..http.errors import BadRequest, Conflict, Forbidden, Gone, NotFound
from ..http.router import Route
from ..services import DEFAULT_ORG
from ..store.deletion import SCOPES, WARNINGS
from ..util import iso, now_iso, parse_iso
from ._common import Context, parse_body, store_work
from .domains import visible_domain
from .inboxes import own_inbox

log = logging.getLogger("commune.deletion")

CONFIRM_SECONDS = 3600
TOKEN_PURPOSE = "data-deletion"


class DeletionRequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)

    scope: str | None = Field(None, max_length=32)
    inbox_id: str | None = Field(None, validation_alias=AliasChoices("inbox_id", "inboxId"), max_length=200)
    before: str | None = Field(None, max_length=64)
    domain_id: str | None = Field(None, validation_alias=AliasChoices("domain_id", "domainId"), max_length=200)
    email: str | None = Field(None, max_length=320)


def _expiry(confirm_by: str) -> int:
    return int(parse_iso(confirm_by).timestamp())


def confirmation_token(ctx: Context, request_id: str, confirm_by: str) -> str:
    """The token for one request of the caller's organisation, valid until `confirm_by`."""
    return ctx.services.signer.sign(TOKEN_PURPOSE, f"{ctx.org_id}/{request_id}", _expiry(confirm_by))


def _scope(body: DeletionRequestBody) -> str:
    """The scope asked for, or the one the single given target names (`inboxId`, `domainId`, `email`)."""
    targets = [scope for scope, value in (("inbox", body.inbox_id), ("domain", body.domain_id),
                                          ("email", body.email)) if value]
    if body.scope:
        scope = body.scope
    elif len(targets) > 1:
        raise BadRequest("Give one of inbox_id, domain_id or email, or name the scope")
    elif targets:
        scope = targets[0]
    else:
        raise BadRequest(f"scope is required: one of {', '.join(SCOPES)}")
    if scope not in SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(SCOPES)}")
    return scope


def _params(ctx: Context, body: DeletionRequestBody) -> tuple[str, dict]:
    """Validated scope and parameters; a target alone names its scope (as the official CLI sends it)."""
    scope = _scope(body)
    for value, name, applies in ((body.inbox_id, "inbox_id", ("inbox", "messages")),
                                 (body.domain_id, "domain_id", ("domain",)), (body.email, "email", ("email",))):
        if value and scope not in applies:
            raise BadRequest(f"{name} does not apply to scope '{scope}'")
        if not value and scope == applies[0]:
            raise BadRequest(f"{name} is required for scope '{scope}'")
    params: dict = {}
    if body.email:
        address = normalise_address(body.email)
        if address is None:
            raise BadRequest("email must be an email address, e.g. someone@example.com")
        params["email"] = address
    if body.inbox_id:
        params["inbox_id"] = own_inbox(ctx, body.inbox_id)["id"]
    if body.domain_id:
        params["domain_id"] = visible_domain(ctx, body.domain_id)["id"]
    if body.before:
        if scope != "messages":
            raise BadRequest("before applies only to scope 'messages'")
        try:
            params["before"] = iso(parse_iso(body.before))
        except ValueError:
            raise BadRequest("before must be an ISO 8601 date or date-time, e.g. 2025-01-01T00:00:00Z") from None
    if scope in ("messages", "email"):
        # Mail arriving after the preview is not part of what the caller reviewed.
        params["until"] = now_iso()
    if scope == "organization":
        org = ctx.services.orgs.get_org(ctx.org_id)
        if org is not None and org["name"] == DEFAULT_ORG:
            raise Conflict("The server's default organization holds the admin key and cannot be deleted")
    return scope, params


@store_work
def create_request(ctx: Context) -> tuple[int, dict]:
    body = parse_body(ctx.request, DeletionRequestBody)
    scope, params = _params(ctx, body)
    expires_at = int(time.time()) + CONFIRM_SECONDS
    confirm_by = iso(datetime.fromtimestamp(expires_at, tz=UTC))
    detail = {"scope": scope, **{k: v for k, v in params.items() if k != "until"}}

    def log_request(conn: sqlite3.Connection, request_id: str) -> None:
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "deletion.requested", "deletion_request", request_id,
                                  detail, conn=conn)

    created = ctx.services.deletion.create_request(ctx.org_id, scope, params, confirm_by, log_request)
    if created is None:
        raise Conflict("A deletion request is already pending for this organization; confirm it or let it expire")
    created["confirmation_token"] = confirmation_token(ctx, created["id"], created["confirm_by"])
    created["warning"] = WARNINGS[scope]
    return 201, created


@store_work
def confirm_request(ctx: Context) -> dict:
    store = ctx.services.deletion
    found = store.get_request(ctx.org_id, ctx.params["deletion_id"])
    if found is None:
        raise NotFound("Deletion request not found")
    body = ctx.request.json_object()
    token = body.get("confirmation_token", body.get("confirmationToken"))
    if not isinstance(token, str) or not token.strip():
        raise BadRequest("confirmation_token is required (it was returned when the deletion request was created)")
    if found["status"] == "completed":
        raise Conflict("This deletion request was already completed")
    verdict = ctx.services.signer.verify(
        TOKEN_PURPOSE, f"{ctx.org_id}/{found['id']}", _expiry(found["confirm_by"]), token.strip()
    )
    if verdict == "invalid":
        raise Forbidden("confirmation_token is not valid for this deletion request")
    if verdict == "expired":
        raise Gone(f"This deletion request expired at {found['confirm_by']}; create a new one")

    def log_first(conn: sqlite3.Connection) -> None:
        # Written before the purge: for the organization scope it is purged along with the rest.
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "deletion.confirmed", "deletion_request", found["id"],
                                  {"scope": found["scope"], "preview": found["preview"]}, conn=conn)

    done = store.execute_request(ctx.org_id, found["id"], log_first)
    if done is None:
        raise Conflict("This deletion request was already completed")
    if done["scope"] == "organization":
        ctx.services.keys.forget()
    log.info("deletion %s (%s) of org %s completed: %s", done["id"], done["scope"], ctx.org_id,
             {k: v for k, v in done["deleted_counts"].items() if v})
    return done


@store_work
def get_request(ctx: Context) -> dict:
    found = ctx.services.deletion.get_request(ctx.org_id, ctx.params["deletion_id"])
    if found is None:
        raise NotFound("Deletion request not found")
    return found


ROUTES = [
    Route("POST", "/v1/data/deletion-request", create_request, "data:delete",
          "Request a deletion (preview and confirmation token)"),
    Route("POST", "/v1/data/deletion-request/{deletion_id}/confirm", confirm_request, "data:delete",
          "Confirm a deletion request"),
    Route("GET", "/v1/data/deletion-request/{deletion_id}", get_request, "data:delete",
          "Get a deletion request"),
]
