"""Inboxes: create (simplified or under a domain), list, get, update, delete, webhook and schema."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from ..auth import has_scope
from ..http.errors import BadRequest, Conflict, NotFound
from ..http.router import Route
from ..models.addressing import (
    CreateInbox,
    ExtractionSchema,
    UpdateInbox,
    WebhookConfig,
    inbox_json,
)
from ..webhooks.targets import RefusedTarget, parse_endpoint, refuse_by_name
from ._common import Context, data, parse_body, store_work
from .domains import visible_domain

DEFAULT_TRASH_DAYS = 30


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def webhook_columns(ctx: Context, webhook: WebhookConfig, current: dict | None) -> dict:
    """Columns for a webhook config; a secret is generated once and kept across endpoint changes.

    An endpoint that is plainly private (a loopback name or a non-public literal address) is a 400
    when private targets are off; names are judged again at every delivery, after resolution.
    """
    if not ctx.services.settings.webhook_allow_private:
        try:
            refuse_by_name(parse_endpoint(webhook.endpoint).host)
        except RefusedTarget as exc:
            raise BadRequest(str(exc)) from None
    secret = (current or {}).get("webhook_secret") or new_webhook_secret()
    return {
        "webhook_endpoint": webhook.endpoint,
        "webhook_events": webhook.events or ["email.received"],
        "webhook_secret": secret,
    }


def schema_columns(webhook: WebhookConfig) -> dict:
    """The inbox's extraction schema when the webhook object names one (`null` removes it).

    Stored like the extraction-schema routes store theirs; no model runs it (`extracted_data` stays null).
    """
    if "extraction_schema" not in webhook.model_fields_set:
        return {}
    value = webhook.extraction_schema
    return {"extraction_schema": None if value is None else {"schema": value, "enabled": True}}


def inbox_views(ctx: Context, inboxes: list[dict]) -> list[dict[str, Any]]:
    """Inboxes as this caller may see them, each with its thread `counts` (one query for them all); only
    keys that can change an inbox's webhook see the signing secret."""
    counts = ctx.services.mail.inbox_counts([inbox["id"] for inbox in inboxes])
    secret = has_scope(ctx.scopes, "inboxes:write")
    return [{**inbox_json(inbox, with_secret=secret), "counts": counts[inbox["id"]]} for inbox in inboxes]


def inbox_view(ctx: Context, inbox: dict) -> dict[str, Any]:
    return inbox_views(ctx, [inbox])[0]


def own_inbox(ctx: Context, inbox_id: str, domain_id: str | None = None) -> dict:
    inbox = ctx.services.domains.get_inbox(ctx.org_id, inbox_id)
    if inbox is None or (domain_id is not None and inbox["domain_id"] != domain_id):
        raise NotFound("Inbox not found")
    return inbox


def _create(ctx: Context, body: CreateInbox, domain: dict) -> tuple[int, dict]:
    store = ctx.services.domains
    if store.address_taken(domain["id"], body.local_part):
        raise Conflict(f"Address {body.local_part}@{domain['name']} is already taken")
    webhook = None
    if body.webhook is not None:
        columns = webhook_columns(ctx, body.webhook, None)
        webhook = {"endpoint": columns["webhook_endpoint"], "events": columns["webhook_events"],
                   "secret": columns["webhook_secret"]}
    try:
        inbox = store.create_inbox(ctx.org_id, domain, body.local_part, body.name, webhook)
    except Exception as exc:
        if "UNIQUE" in str(exc):
            raise Conflict(f"Address {body.local_part}@{domain['name']} is already taken") from exc
        raise
    if body.webhook is not None and (schema := schema_columns(body.webhook)):
        inbox = store.update_inbox(ctx.org_id, inbox["id"], schema)
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "inbox.created", "inbox", inbox["id"],
                              {"address": inbox["address"]})
    return 201, data(inbox_view(ctx, inbox), id=inbox["id"], email=inbox["address"])


@store_work
def create_inbox_simple(ctx: Context) -> tuple[int, dict]:
    body = parse_body(ctx.request, CreateInbox)
    if body.domain_id:
        domain = visible_domain(ctx, body.domain_id)
    else:
        domain = ctx.services.domains.shared_domain()
        if domain is None:
            raise BadRequest("No default domain is configured; pass domain_id")
    return _create(ctx, body, domain)


@store_work
def create_inbox_in_domain(ctx: Context) -> tuple[int, dict]:
    domain = visible_domain(ctx, ctx.params["domain_id"])
    body = parse_body(ctx.request, CreateInbox)
    return _create(ctx, body, domain)


@store_work
def list_all_inboxes(ctx: Context) -> dict:
    domain_id = ctx.request.arg("domain_id", "domainId")
    inboxes = ctx.services.domains.list_inboxes(ctx.org_id, domain_id or None)
    return data(inbox_views(ctx, inboxes))


@store_work
def list_domain_inboxes(ctx: Context) -> dict:
    domain = visible_domain(ctx, ctx.params["domain_id"])
    return data(inbox_views(ctx, ctx.services.domains.list_inboxes(ctx.org_id, domain["id"])))


@store_work
def get_inbox(ctx: Context) -> dict:
    return data(inbox_view(ctx, own_inbox(ctx, ctx.params["inbox_id"], ctx.params.get("domain_id"))))


@store_work
def update_inbox(ctx: Context) -> dict:
    inbox = own_inbox(ctx, ctx.params["inbox_id"], ctx.params.get("domain_id"))
    body = parse_body(ctx.request, UpdateInbox)
    fields = body.model_fields_set
    changes: dict = {}
    if "local_part" in fields and body.local_part is not None and body.local_part != inbox["local_part"]:
        if ctx.services.domains.address_taken(inbox["domain_id"], body.local_part, inbox["id"]):
            raise Conflict(f"Address {body.local_part}@{inbox['domain_name']} is already taken")
        changes["local_part"] = body.local_part
        changes["address"] = f"{body.local_part}@{inbox['domain_name']}"
    if "name" in fields:
        changes["display_name"] = body.name
    if "status" in fields:
        changes["status"] = body.status
    if "retention_days" in fields:
        changes["retention_days"] = body.retention_days
    if "trash_days" in fields:
        changes["trash_days"] = body.trash_days if body.trash_days is not None else DEFAULT_TRASH_DAYS
    if "reject_unauthenticated" in fields:
        changes["reject_unauthenticated"] = body.reject_unauthenticated or "none"
    if "approval" in fields:
        changes["approval"] = body.approval or "none"
    if "approval_timeout_hours" in fields:
        changes["approval_timeout_hours"] = body.approval_timeout_hours or 72
    if "webhook" in fields:
        hook = body.webhook
        if hook is None or hook.removes_webhook:
            changes.update(webhook_endpoint=None, webhook_events=None, webhook_secret=None)
        else:
            if hook.endpoint is None and "events" in hook.model_fields_set:
                if not inbox.get("webhook_endpoint"):
                    raise BadRequest("Invalid request: webhook.endpoint: Field required")
                hook = hook.model_copy(update={"endpoint": inbox["webhook_endpoint"]})
            if hook.endpoint is not None:
                changes.update(webhook_columns(ctx, hook, inbox))
            changes.update(schema_columns(hook))
    updated = ctx.services.domains.update_inbox(ctx.org_id, inbox["id"], changes)
    if changes:
        action = "webhook.changed" if "webhook_endpoint" in changes else "inbox.updated"
        ctx.services.audit.record(ctx.org_id, ctx.key.id, action, "inbox", inbox["id"],
                                  {"fields": sorted(k for k in changes if k != "webhook_secret")})
    return data(inbox_view(ctx, updated))


@store_work
def set_webhook(ctx: Context) -> dict:
    inbox = own_inbox(ctx, ctx.params["inbox_id"], ctx.params.get("domain_id"))
    body = parse_body(ctx.request, WebhookConfig)
    columns = {**webhook_columns(ctx, body, inbox), **schema_columns(body)}
    updated = ctx.services.domains.update_inbox(ctx.org_id, inbox["id"], columns)
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "webhook.changed", "inbox", inbox["id"],
                              {"endpoint": body.endpoint})
    return data(inbox_view(ctx, updated))


@store_work
def delete_inbox(ctx: Context) -> dict:
    """Delete the inbox with its threads, messages, attachments and delivery records, in one transaction."""
    inbox = own_inbox(ctx, ctx.params["inbox_id"], ctx.params.get("domain_id"))

    def audit(conn: sqlite3.Connection) -> None:
        ctx.services.audit.record(ctx.org_id, ctx.key.id, "inbox.deleted", "inbox", inbox["id"],
                                  {"address": inbox["address"]}, conn=conn)

    ctx.services.deletion.delete_inbox(ctx.org_id, inbox["id"], audit)
    return data({"ok": True})


@store_work
def set_schema(ctx: Context) -> dict:
    inbox = own_inbox(ctx, ctx.params["inbox_id"], ctx.params.get("domain_id"))
    body = ctx.request.json_object()
    if "schema" not in body or not isinstance(body["schema"], dict):
        raise BadRequest("Invalid request: schema: must be a JSON object")
    if ctx.request.method == "PUT":
        parsed = parse_body(ctx.request, ExtractionSchema)
        value = {"name": parsed.name, "schema": parsed.schema_, "enabled": parsed.enabled,
                 "description": parsed.description}
    else:
        value = {"schema": body["schema"], "enabled": True}
    updated = ctx.services.domains.update_inbox(ctx.org_id, inbox["id"], {"extraction_schema": value})
    return data(inbox_view(ctx, updated))


@store_work
def remove_schema(ctx: Context) -> dict:
    inbox = own_inbox(ctx, ctx.params["inbox_id"], ctx.params.get("domain_id"))
    updated = ctx.services.domains.update_inbox(ctx.org_id, inbox["id"], {"extraction_schema": None})
    return data(inbox_view(ctx, updated))


BY_DOMAIN = "/v1/domains/{domain_id}/inboxes/{inbox_id}"

ROUTES = [
    Route("GET", "/v1/inboxes", list_all_inboxes, "inboxes:read", "List all inboxes"),
    Route("POST", "/v1/inboxes", create_inbox_simple, "inboxes:write", "Create an inbox"),
    Route("GET", "/v1/inboxes/{inbox_id}", get_inbox, "inboxes:read", "Get an inbox"),
    Route("PATCH", "/v1/inboxes/{inbox_id}", update_inbox, "inboxes:write", "Update an inbox"),
    Route("GET", "/v1/domains/{domain_id}/inboxes", list_domain_inboxes, "inboxes:read",
          "List a domain's inboxes"),
    Route("POST", "/v1/domains/{domain_id}/inboxes", create_inbox_in_domain, "inboxes:write",
          "Create an inbox on a domain"),
    Route("GET", BY_DOMAIN, get_inbox, "inboxes:read", "Get an inbox"),
    Route("PUT", BY_DOMAIN, update_inbox, "inboxes:write", "Update an inbox (partial)"),
    Route("DELETE", BY_DOMAIN, delete_inbox, "inboxes:write", "Delete an inbox"),
    Route("POST", BY_DOMAIN + "/webhook", set_webhook, "inboxes:write", "Set an inbox's webhook"),
    Route("POST", BY_DOMAIN + "/schema", set_schema, "inboxes:write", "Set an extraction schema"),
    Route("DELETE", BY_DOMAIN + "/schema", remove_schema, "inboxes:write", "Remove the extraction schema"),
    Route("PUT", BY_DOMAIN + "/extraction-schema", set_schema, "inboxes:write", "Set an extraction schema"),
    Route("DELETE", BY_DOMAIN + "/extraction-schema", remove_schema, "inboxes:write",
          "Remove the extraction schema"),
]
