"""Request bodies and response shapes for domains and inboxes."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
KNOWN_EVENTS = ("email.received", "inbound", "delivery", "bounce", "email.sent", "email.delivered",
                "email.bounced", "outbox", "message.scheduled", "message.pending_approval", "message.approved",
                "message.rejected", "message.cancelled")
INBOX_STATUSES = ("active", "paused", "disabled", "inactive")
"""`inactive` (the SDK's word) takes no mail, exactly like `disabled`; it is stored and shown as sent."""


def validate_domain_name(value: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not DOMAIN_RE.match(name):
        raise ValueError(f"'{value}' is not a valid domain name")
    return name


def validate_display_name(value: str | None) -> str | None:
    """A display name goes into the From header of every send: no line breaks or control characters."""
    if value is not None and any(not c.isprintable() for c in value):
        raise ValueError("must be a single line without control characters")
    return value


def validate_local_part(value: str) -> str:
    local = value.strip()
    if not local or len(local) > 64 or not LOCAL_RE.match(local):
        raise ValueError(
            f"'{value}' is not a valid local part (letters, digits, !#$%&'*+/=?^_`{{|}}~- and single dots, up to 64)"
        )
    return local.lower()


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)


class CreateDomain(Strict):
    name: str = Field(validation_alias=AliasChoices("name", "domain"), max_length=253)
    region: str = Field("us-east-1", max_length=32)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_domain_name(value)


class WebhookConfig(Strict):
    endpoint: str = Field(max_length=2048)
    events: list[str] | None = None
    extraction_schema: dict[str, Any] | None = Field(
        None, validation_alias=AliasChoices("extractionSchema", "extraction_schema")
    )
    """A JSON Schema stored on the inbox (the SDK sends it inside `webhook`); null removes it."""

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/]+", value) or any(c in value for c in "\r\n "):
            raise ValueError("webhook endpoint must be an http(s) URL")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [e for e in value if e not in KNOWN_EVENTS]
        if unknown:
            raise ValueError(f"unknown event(s) {unknown}; known: {', '.join(KNOWN_EVENTS)}")
        return list(dict.fromkeys(value))


class WebhookUpdate(WebhookConfig):
    """`webhook` in an inbox update: `{}` removes the webhook (the SDK never sends null); an object with
    only `extractionSchema` changes the schema and leaves the webhook as it is."""

    endpoint: str | None = Field(None, max_length=2048)  # type: ignore[assignment]

    @property
    def removes_webhook(self) -> bool:
        """`{}` (or a null endpoint alone): nothing but the wish to have no webhook."""
        return self.endpoint is None and not ({"events", "extraction_schema"} & self.model_fields_set)


class CreateInbox(Strict):
    # The MCP tool sends `name` and `display_name` together; the display name is the sender name.
    local_part: str = Field(validation_alias=AliasChoices("local_part", "localPart"), max_length=64)
    domain_id: str | None = Field(None, validation_alias=AliasChoices("domain_id", "domainId"))
    name: str | None = Field(
        None, validation_alias=AliasChoices("display_name", "displayName", "name"), max_length=200
    )
    webhook: WebhookConfig | None = None

    @field_validator("local_part")
    @classmethod
    def _local(cls, value: str) -> str:
        return validate_local_part(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return validate_display_name(value)


class UpdateInbox(Strict):
    local_part: str | None = Field(
        None, validation_alias=AliasChoices("local_part", "localPart"), max_length=64
    )
    name: str | None = Field(
        None, validation_alias=AliasChoices("display_name", "displayName", "name"), max_length=200
    )
    webhook: WebhookUpdate | None = None
    status: str | None = None
    retention_days: int | None = Field(None, ge=1, le=36500)
    trash_days: int | None = Field(None, ge=1, le=36500, validation_alias=AliasChoices("trash_days", "trashDays"))
    reject_unauthenticated: Literal["none", "quarantine", "reject"] | None = Field(
        None, validation_alias=AliasChoices("reject_unauthenticated", "rejectUnauthenticated")
    )
    approval: Literal["none", "all", "external"] | None = None
    """Which sends wait for a person: none, all, or those with a recipient outside the organisation's domains."""
    approval_timeout_hours: int | None = Field(
        None, ge=1, le=24 * 30, validation_alias=AliasChoices("approval_timeout_hours", "approvalTimeoutHours")
    )

    @field_validator("local_part")
    @classmethod
    def _local(cls, value: str | None) -> str | None:
        return validate_local_part(value) if value is not None else None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return validate_display_name(value)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and value not in INBOX_STATUSES:
            raise ValueError(f"status must be one of {', '.join(INBOX_STATUSES)}")
        return value


class ExtractionSchema(Strict):
    name: str | None = Field(None, max_length=200)
    schema_: dict[str, Any] = Field(validation_alias=AliasChoices("schema", "schema_"))
    enabled: bool = True
    description: str | None = Field(None, max_length=2000)


def inbox_json(inbox: dict, *, with_secret: bool) -> dict[str, Any]:
    """An inbox on the wire; the webhook's signing secret only when `with_secret` (it can forge webhooks)."""
    stored_schema = inbox.get("extraction_schema") or {}
    schema = stored_schema.get("schema")
    webhook = None
    if inbox.get("webhook_endpoint"):
        webhook = {
            "endpoint": inbox["webhook_endpoint"],
            "events": inbox.get("webhook_events") or ["email.received"],
        }
        if with_secret:
            webhook["secret"] = inbox.get("webhook_secret")
        if schema is not None:  # the SDK sets the schema inside `webhook` and may read it back there
            webhook["extractionSchema"] = schema
    return {
        "id": inbox["id"],
        "localPart": inbox["local_part"],
        "address": inbox["address"],
        "domain_id": inbox["domain_id"],
        "domain_name": inbox.get("domain_name"),
        "displayName": inbox.get("display_name"),
        "status": inbox.get("status"),
        "webhook": webhook,
        "extractionSchema": schema,
        "extractionSchemaSettings": (
            {k: stored_schema.get(k) for k in ("name", "enabled", "description")} if stored_schema else None
        ),
        "retention_days": inbox.get("retention_days"),
        "trash_days": inbox.get("trash_days", 30),
        "reject_unauthenticated": inbox.get("reject_unauthenticated") or "none",
        "approval": inbox.get("approval") or "none",
        "approval_timeout_hours": inbox.get("approval_timeout_hours") or 72,
        "createdAt": inbox["created_at"],
        # The names the official CLI's inbox table reads.
        "email": inbox["address"],
        "name": inbox.get("display_name"),
        "domainId": inbox["domain_id"],
    }


def inbox_brief(inbox: dict) -> dict[str, Any]:
    return {"id": inbox["id"], "localPart": inbox["local_part"], "address": inbox["address"]}


def domain_json(domain: dict, inboxes: list[dict] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": domain["id"],
        "name": domain["name"],
        "status": domain["status"],
        "region": domain["region"],
        "records": domain["records"],
        "shared": domain["shared"],
        "createdAt": domain["created_at"],
        "domain": domain["name"],  # the official CLI's domain table reads `domain`
    }
    if inboxes is not None:
        body["inboxes"] = [inbox_brief(i) for i in inboxes]
    return body
