"""The OpenAPI 3.1 document, built from the live route table so it cannot drift from the code.

Every route in `app.routes` appears with its method, path parameters, summary and required scope
(`x-required-scope`). `OPERATIONS` adds what the table cannot know: query parameters, request headers,
the request body (the same pydantic model the handler validates with) and the success shape. A route
without an entry still appears, with a generic JSON object as its body and response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from . import __version__
from .api.agent import CreateKey, UpdateKey
from .api.deletion import DeletionRequestBody
from .api.delivery import AddSuppression
from .api.outbox import ApproveBody, DraftBody, RejectBody
from .api.triage import AssignBody, StatusBody, Tags, ThreadPatch
from .http.router import Route
from .models.addressing import (
    CreateDomain,
    CreateInbox,
    ExtractionSchema,
    UpdateInbox,
    WebhookConfig,
)
from .models.mail import LabelChanges, SendMessage, UploadAttachment
from .store.delivery import EVENT_TYPES

REF = "#/components/schemas/{model}"
STR: dict[str, Any] = {"type": "string"}
NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
ERROR_TEXT = {
    400: "The request is invalid; `error` names the field at fault",
    401: "Missing or invalid API key",
    403: "The key lacks the scope this route needs",
    404: "No such resource in the caller's organisation",
    405: "The path exists but not with this method",
    409: "The resource already exists or is being changed",
    410: "The resource has expired",
    413: "The body or attachment is too large",
    429: "Too many requests for this key",
}


@dataclass(frozen=True)
class Param:
    """A query parameter or request header."""

    name: str
    schema: dict[str, Any] = field(default_factory=lambda: dict(STR))
    required: bool = False
    description: str = ""
    where: str = "query"


@dataclass(frozen=True)
class Operation:
    """What one route takes and gives beyond its method and path."""

    query: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    response: dict[str, Any] = field(default_factory=lambda: dict(ANY_OBJECT))
    status: int = 200
    content_type: str = "application/json"
    errors: tuple[int, ...] = ()
    raw_upload: bool = False
    """The body may also be the file itself (any media type), named by `X-Filename`."""
    accepted: bool = False
    """The route may also answer `202` with the same shape (a send that is held or scheduled)."""


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _data(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


def _list(name: str) -> dict[str, Any]:
    return _data({"type": "array", "items": _ref(name)})


def _page(name: str) -> dict[str, Any]:
    schema = _list(name)
    schema["properties"].update(next_cursor=NULLABLE_STR, has_more={"type": "boolean"})
    schema["required"] = ["data", "has_more"]
    return schema


def _int(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _limit(default: int, high: int) -> Param:
    return Param("limit", {**_int(1, high), "default": default}, description="Page size")


CURSOR = Param("cursor", description="`next_cursor` from the previous page, unchanged")
ORDER = Param("order", _enum("asc", "desc"), description="Sort direction by time")
INBOX_ID = Param("inbox_id", description="Only this inbox (alias inboxId)")
DOMAIN_ID = Param("domain_id", description="Only this domain (alias domainId)")
ID_OBJECT = {"type": "object", "required": ["id"], "properties": {"id": STR}}
LABELS = Param("labels", description="Only mail with every one of these labels (comma-separated; alias label)."
                " `trash` and `quarantine` are left out unless named here")
EXCLUDE_LABELS = Param("exclude_labels", description="Leave out mail with any of these labels (comma-separated)")
LABEL_LIST = {"type": "array", "items": STR,
              "description": "System labels unread, flagged, archived, trash, sent, received, quarantine;"
                             " any other string is a user label (lower-cased). A thread's are the union of"
                             " its messages'"}
COUNTS = {"type": "object", "required": ["threads", "unread_threads", "flagged_threads", "trash_threads"],
          "description": "Threads the default list shows, how many of them are unread and flagged, and how"
                         " many threads are in the trash",
          "properties": {k: {"type": "integer", "minimum": 0}
                         for k in ("threads", "unread_threads", "flagged_threads", "trash_threads")}}
DELETED = _data({"type": "object", "required": ["id", "deleted"],
                 "properties": {"id": STR, "deleted": {"type": "boolean"},
                                "deleted_counts": {"type": "object", "additionalProperties": {"type": "integer"}}}})
DMARC_DOMAIN = Param("domain", {"type": "string", "minLength": 1}, required=True,
                     description="The organisation's domain, by name or id")

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": STR}},
    "Domain": {"type": "object", "required": ["id", "name", "status"],
               "properties": {"id": STR, "name": STR, "status": STR, "region": STR,
                              "records": {"type": "array"}, "shared": {"type": "boolean"},
                              "createdAt": STR, "inboxes": {"type": "array"},
                              "domain": STR}},
    "Inbox": {"type": "object", "required": ["id", "address", "domain_id"],
              "properties": {"id": STR, "localPart": STR, "address": STR, "domain_id": STR,
                             "displayName": NULLABLE_STR, "status": NULLABLE_STR,
                             "webhook": {"type": ["object", "null"]}, "createdAt": STR,
                             "extractionSchema": {"type": ["object", "null"]},
                             "extractionSchemaSettings": {"type": ["object", "null"]},
                             "approval": _enum("none", "all", "external"),
                             "approval_timeout_hours": {"type": "integer", "minimum": 1},
                             "email": STR, "name": NULLABLE_STR, "domainId": STR,
                             "retention_days": {"type": ["integer", "null"]},
                             "trash_days": {"type": "integer", "minimum": 1,
                                            "description": "Days a thread stays in the trash before the"
                                                           " retention sweep deletes it"},
                             "counts": COUNTS}},
    "Thread": {"type": "object", "required": ["thread_id", "message_count"],
               "properties": {"thread_id": STR, "subject": NULLABLE_STR, "message_count": {"type": "integer"},
                              "last_message_at": STR, "inbox_id": STR, "tags": {"type": "array"},
                              "status": NULLABLE_STR, "assigned_to": NULLABLE_STR,
                              "has_attachments": {"type": "boolean"},
                              "id": STR, "participantCount": {"type": "integer"}, "lastActivityAt": STR,
                              "unread_count": {"type": "integer"}, "labels": LABEL_LIST,
                              "last_sender": STR, "last_sender_name": NULLABLE_STR}},
    "Message": {"type": "object", "required": ["id", "thread_id", "direction"],
                "properties": {"id": STR, "message_id": STR, "thread_id": STR, "direction": STR,
                               "participants": {"type": "array"}, "content": STR,
                               "content_html": NULLABLE_STR, "attachments": {"type": "array"},
                               "created_at": STR, "metadata": ANY_OBJECT, "labels": LABEL_LIST,
                               "sent_at": {**NULLABLE_STR, "description": "The Date header (ISO 8601, UTC);"
                                           " null when absent or unparseable. created_at is the arrival"},
                               "from": STR, "subject": STR, "date": STR, "threadId": STR, "createdAt": STR,
                               "extracted": _ref("Extracted")}},
    "Extracted": {"type": "object", "required": ["codes", "links"],
                  "description": "One-time codes and http(s) links found by rules (no model); quoted replies "
                                 "are left out. Schema-driven extraction is not done: `extracted_data` is null.",
                  "properties": {"codes": {"type": "array", "items": STR},
                                 "links": {"type": "array", "items": {
                                     "type": "object", "required": ["url", "text"],
                                     "properties": {"url": STR, "text": STR}}}}},
    "Contact": {"type": "object", "required": ["address", "last_at"],
                "description": "An address this organisation exchanged mail with (a sender of received mail,"
                               " a recipient of sent mail), most recent first",
                "properties": {"address": STR, "name": NULLABLE_STR, "last_at": STR,
                               "message_count": {"type": "integer"}}},
    "Attachment": {"type": "object", "required": ["attachment_id", "filename", "size"],
                   "properties": {"attachment_id": STR, "filename": STR, "mime_type": STR,
                                  "size": {"type": "integer"}}},
    "WebhookDelivery": {"type": "object", "required": ["id", "status", "event"],
                        "properties": {"id": STR, "status": STR, "event": STR, "endpoint": STR,
                                       "attemptCount": {"type": "integer"}}},
    "ApiKey": {"type": "object", "required": ["id", "scopes", "status"],
               "properties": {"id": STR, "name": STR, "keyPrefix": STR,
                              "scopes": {"type": "array", "items": STR}, "status": STR,
                              "hold_sends": {"type": "boolean"}}},
    "Draft": {"type": "object", "required": ["id", "inbox_id", "to", "created_at", "updated_at"],
              "description": "A message to send later; any part may still be empty until it is sent.",
              "properties": {"id": STR, "draft_id": STR, "inbox_id": STR, "from": NULLABLE_STR,
                             "to": {"type": "array", "items": STR}, "cc": {"type": "array", "items": STR},
                             "bcc": {"type": "array", "items": STR}, "reply_to": {"type": "array", "items": STR},
                             "subject": NULLABLE_STR, "text": NULLABLE_STR, "html": NULLABLE_STR,
                             "attachments": {"type": "array", "items": STR}, "thread_id": NULLABLE_STR,
                             "in_reply_to": NULLABLE_STR, "headers": ANY_OBJECT, "send_at": NULLABLE_STR,
                             "created_at": STR, "updated_at": STR}},
    "OutboxItem": {"type": "object", "required": ["id", "status", "message"],
                   "description": "A held or scheduled message: its place in the outbox, the recipient "
                                  "validation verdict from submission, and the message itself.",
                   "properties": {"id": STR, "message_id": STR, "thread_id": STR, "inbox_id": STR,
                                  "status": _enum("pending_approval", "scheduled", "approved", "sent", "rejected",
                                                  "cancelled", "failed"),
                                  "send_at": NULLABLE_STR, "expires_at": NULLABLE_STR, "reason": NULLABLE_STR,
                                  "submitted_by": NULLABLE_STR, "decided_by": NULLABLE_STR,
                                  "validation": {"type": ["object", "null"]}, "created_at": STR,
                                  "updated_at": STR, "message": _ref("Message")}},
    "SendResult": {"type": "object", "required": ["data"], "properties": {"data": ANY_OBJECT}},
    "AuditEntry": {"type": "object", "required": ["id", "action"], "properties": {"id": STR, "action": STR}},
    "DeliveryEvent": {"type": "object", "required": ["id"],
                      "properties": {"id": STR, "type": STR, "email": STR, "messageId": STR}},
    "Suppression": {"type": "object", "required": ["email"], "properties": {"email": STR}},
    "DmarcReport": {"type": "object", "required": ["id", "status", "domain_id", "message_id"],
                    "properties": {"id": STR, "status": _enum("pending", "parsed", "failed", "duplicate"),
                                   "error": NULLABLE_STR, "domain": STR, "domain_id": STR, "message_id": STR,
                                   "reporterOrg": NULLABLE_STR, "reporterEmail": NULLABLE_STR,
                                   "reportId": NULLABLE_STR, "dateRangeBegin": NULLABLE_STR,
                                   "dateRangeEnd": NULLABLE_STR, "policy": ANY_OBJECT,
                                   "recordCount": {"type": "integer"}, "messageCount": {"type": "integer"},
                                   "passCount": {"type": "integer"}, "failCount": {"type": "integer"},
                                   "records": {"type": "array"}}},
}

_COUNT = {"type": "integer", "minimum": 0}
_RATE = {"type": "number", "minimum": 0, "maximum": 1}
METRICS: dict[str, Any] = {
    "type": "object", "required": ["sent", "delivered", "bounced", "bounce_rate", "complaint_rate"],
    "properties": {**{k: _COUNT for k in ("sent", "delivered", "bounced", "complained", "failed", "deferred",
                                          "queued")},
                   **{k: _RATE for k in ("delivery_rate", "bounce_rate", "complaint_rate")}, "period": STR},
}
"""Delivery figures; the route sends them inside `data` and again at the top level (for the CLI)."""

SEARCH_PAGE = _page("Thread")
SEARCH_PAGE["properties"]["total"] = {"type": "integer", "minimum": 0,
                                      "description": "How many threads match; with total_exact false, at least"
                                                     " this many (counted over the newest 1 000 matching"
                                                     " messages)"}
SEARCH_PAGE["properties"]["total_exact"] = {"type": "boolean"}
SEARCH_PAGE["description"] = "Threads with a message matching every term, newest match first"
OK = _data({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}})
IDS = "ids and filenames are opaque strings; another organisation's id is a 404"

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation(response={"type": "object", "required": ["status"]}),
    ("GET", "/v1/health"): Operation(response={"type": "object", "required": ["status"]}),
    ("GET", "/v1/openapi.json"): Operation(response={"type": "object", "required": ["openapi", "paths"]}),
    ("GET", "/v1/agent/org"): Operation(response=_data(ID_OBJECT)),
    ("GET", "/v1/agent/api-keys"): Operation(response=_page("ApiKey")),
    ("POST", "/v1/agent/api-keys"): Operation(body=CreateKey, status=201, response=_data(_ref("ApiKey"))),
    ("PATCH", "/v1/agent/api-keys/{key_id}"): Operation(body=UpdateKey, response=_data(_ref("ApiKey"))),
    ("DELETE", "/v1/agent/api-keys/{key_id}"): Operation(response=_data(ID_OBJECT)),
    ("POST", "/v1/drafts"): Operation(body=DraftBody, status=201, response=_data(_ref("Draft"))),
    ("GET", "/v1/drafts"): Operation(query=(INBOX_ID, _limit(50, 200), CURSOR, ORDER), response=_page("Draft")),
    ("GET", "/v1/drafts/{draft_id}"): Operation(response=_data(_ref("Draft"))),
    ("PATCH", "/v1/drafts/{draft_id}"): Operation(body=DraftBody, response=_data(_ref("Draft")), errors=(409,)),
    ("DELETE", "/v1/drafts/{draft_id}"): Operation(response=OK, errors=(409,)),
    ("POST", "/v1/drafts/{draft_id}/send"): Operation(
        response=_ref("SendResult"), errors=(409, 413), accepted=True,
        query=(Param("Idempotency-Key", {"type": "string", "maxLength": 255}, where="header",
                     description="Repeat a send safely: the same key returns the first result"),)),
    ("GET", "/v1/approvals"): Operation(query=(INBOX_ID, _limit(50, 200), CURSOR, ORDER),
                                        response=_page("OutboxItem")),
    ("GET", "/v1/outbox"): Operation(
        query=(INBOX_ID, Param("status", _enum("pending_approval", "scheduled", "approved", "sent", "rejected",
                                                "cancelled", "failed"), description="Default: scheduled"),
               _limit(50, 200), CURSOR, ORDER),
        response=_page("OutboxItem")),
    ("GET", "/v1/outbox/counts"): Operation(
        query=(INBOX_ID,),
        response=_data({"type": "object", "required": ["drafts", "pending_approval", "scheduled"],
                        "properties": {k: {"type": "integer", "minimum": 0}
                                       for k in ("drafts", "pending_approval", "scheduled")}})),
    ("POST", "/v1/messages/{message_id}/approve"): Operation(body=ApproveBody, response=_data(_ref("OutboxItem")),
                                                            errors=(409,)),
    ("POST", "/v1/messages/{message_id}/reject"): Operation(body=RejectBody, response=_data(_ref("OutboxItem")),
                                                           errors=(409,)),
    ("POST", "/v1/messages/{message_id}/cancel"): Operation(response=_data(_ref("OutboxItem")), errors=(409,)),
    ("GET", "/v1/domains"): Operation(response=_list("Domain")),
    ("POST", "/v1/domains"): Operation(body=CreateDomain, status=201, response=_data(_ref("Domain")),
                                       errors=(409,)),
    ("GET", "/v1/domains/{domain_id}"): Operation(response=_data(_ref("Domain"))),
    ("GET", "/v1/domains/{domain_id}/records"): Operation(response=_data({"type": "array"})),
    ("POST", "/v1/domains/{domain_id}/verify"): Operation(response=_data(ID_OBJECT), errors=(409,)),
    ("GET", "/v1/inboxes"): Operation(query=(DOMAIN_ID,), response=_list("Inbox")),
    ("POST", "/v1/inboxes"): Operation(body=CreateInbox, status=201, response=_data(_ref("Inbox")),
                                       errors=(409,)),
    ("GET", "/v1/inboxes/{inbox_id}"): Operation(response=_data(_ref("Inbox"))),
    ("PATCH", "/v1/inboxes/{inbox_id}"): Operation(body=UpdateInbox, response=_data(_ref("Inbox")),
                                                   errors=(409,)),
    ("GET", "/v1/domains/{domain_id}/inboxes"): Operation(response=_list("Inbox")),
    ("POST", "/v1/domains/{domain_id}/inboxes"): Operation(body=CreateInbox, status=201,
                                                           response=_data(_ref("Inbox")), errors=(409,)),
    ("GET", "/v1/domains/{domain_id}/inboxes/{inbox_id}"): Operation(response=_data(_ref("Inbox"))),
    ("PUT", "/v1/domains/{domain_id}/inboxes/{inbox_id}"): Operation(
        body=UpdateInbox, response=_data(_ref("Inbox")), errors=(409,)),
    ("DELETE", "/v1/domains/{domain_id}/inboxes/{inbox_id}"): Operation(response=OK),
    ("POST", "/v1/domains/{domain_id}/inboxes/{inbox_id}/webhook"): Operation(
        body=WebhookConfig, response=_data(_ref("Inbox"))),
    ("POST", "/v1/domains/{domain_id}/inboxes/{inbox_id}/schema"): Operation(
        body=ExtractionSchema, response=_data(_ref("Inbox"))),
    ("DELETE", "/v1/domains/{domain_id}/inboxes/{inbox_id}/schema"): Operation(response=_data(_ref("Inbox"))),
    ("PUT", "/v1/domains/{domain_id}/inboxes/{inbox_id}/extraction-schema"): Operation(
        body=ExtractionSchema, response=_data(_ref("Inbox"))),
    ("DELETE", "/v1/domains/{domain_id}/inboxes/{inbox_id}/extraction-schema"): Operation(
        response=_data(_ref("Inbox"))),
    ("GET", "/v1/threads"): Operation(query=(INBOX_ID, DOMAIN_ID, LABELS, EXCLUDE_LABELS, _limit(20, 100), CURSOR,
                                             ORDER),
                                      response=_page("Thread")),
    ("DELETE", "/v1/threads/{thread_id}"): Operation(response=DELETED),
    ("GET", "/v1/threads/{thread_id}"): Operation(response=_data(_ref("Thread"))),
    ("PATCH", "/v1/threads/{thread_id}"): Operation(body=ThreadPatch, response=_data(_ref("Thread"))),
    ("GET", "/v1/threads/{thread_id}/messages"): Operation(query=(_limit(50, 1000), CURSOR, ORDER),
                                                           response=_page("Message")),
    ("POST", "/v1/threads/{thread_id}/tags"): Operation(body=Tags, response=_data(_ref("Thread"))),
    ("DELETE", "/v1/threads/{thread_id}/tags"): Operation(body=Tags, response=_data(_ref("Thread"))),
    ("POST", "/v1/threads/{thread_id}/tags/remove"): Operation(body=Tags, response=_data(_ref("Thread"))),
    ("GET", "/v1/threads/{thread_id}/metadata"): Operation(response=_data(ANY_OBJECT)),
    ("PUT", "/v1/threads/{thread_id}/status"): Operation(body=StatusBody, response=_data(ANY_OBJECT)),
    ("PUT", "/v1/threads/{thread_id}/assign"): Operation(body=AssignBody, response=_data(ANY_OBJECT)),
    ("GET", "/v1/messages"): Operation(
        query=(INBOX_ID, DOMAIN_ID, Param("sender", description="Only messages from this address"),
               Param("before", description="ISO 8601 time"), Param("after", description="ISO 8601 time"),
               LABELS, EXCLUDE_LABELS, _limit(50, 1000), CURSOR, ORDER),
        response=_page("Message")),
    ("GET", "/v1/messages/{message_id}"): Operation(response=_data(_ref("Message"))),
    ("PATCH", "/v1/messages/{message_id}"): Operation(body=LabelChanges, response=_data(_ref("Message"))),
    ("DELETE", "/v1/messages/{message_id}"): Operation(response=DELETED),
    ("POST", "/v1/messages/send"): Operation(
        body=SendMessage, response=_ref("SendResult"), errors=(409, 413), accepted=True,
        query=(Param("Idempotency-Key", {"type": "string", "maxLength": 255}, where="header",
                     description="Repeat a send safely: the same key returns the first result"),)),
    ("GET", "/v1/messages/wait"): Operation(
        query=(INBOX_ID, Param("after", description="A message id (msg_…) or an ISO 8601 time"),
               Param("direction", _enum("inbound", "outbound", "all")), _limit(50, 200),
               Param("timeout", {"type": "number", "minimum": 0, "maximum": 60},
                     description="Seconds to wait for a message"),
               Param("code", {"type": "boolean"}, description="Only messages with a one-time code"),
               Param("link_contains", {"type": "string", "maxLength": 500},
                     description="Only messages with a link whose URL contains this text (any case)")),
        response={"type": "object", "required": ["data"],
                  "properties": {"data": {"type": "array", "items": _ref("Message")},
                                 "after": {**NULLABLE_STR, "description": "Pass as `after` to wait for what comes next"}}}),
    ("GET", "/v1/events"): Operation(
        query=(INBOX_ID, DOMAIN_ID, Param("types", description="Comma-separated event types"),
               Param("Last-Event-ID", where="header", description="Resume after this event id")),
        content_type="text/event-stream", response=STR),
    ("GET", "/v1/search/threads"): Operation(
        query=(Param("q", {"type": "string", "minLength": 1, "maxLength": 500}, required=True,
                     description="Words (substrings of subject, body, sender, attachment file names; any case,"
                                 " also inside Chinese, Japanese and Korean text), \"quoted phrases\", -negation"
                                 " and the operators from: to: subject: label: is:unread is:read is:flagged"
                                 " is:unflagged has:attachment before: after: auth:fail (Mailpit's syntax)"),
               INBOX_ID, DOMAIN_ID, LABELS, EXCLUDE_LABELS, _limit(20, 100), CURSOR),
        response=SEARCH_PAGE),
    ("GET", "/v1/contacts"): Operation(
        query=(Param("q", {"type": "string", "maxLength": 200},
                     description="Only addresses or names containing this text (any case)"),
               _limit(20, 100), CURSOR),
        response=_page("Contact")),
    ("POST", "/v1/attachments/upload"): Operation(
        body=UploadAttachment, status=201, response=_data(_ref("Attachment")), errors=(413,),
        raw_upload=True),
    ("GET", "/v1/attachments/{attachment_id}"): Operation(response=_data(_ref("Attachment"))),
    ("GET", "/v1/attachments/{attachment_id}/url"): Operation(
        query=(Param("expires_in", _int(1, 7 * 24 * 3600), description="Seconds the URL stays valid"),),
        response=_data({"type": "object", "required": ["url"], "properties": {"url": STR}})),
    ("GET", "/v1/attachments/{attachment_id}/download"): Operation(
        query=(Param("expires", {"type": "integer"}, required=True),
               Param("signature", required=True)),
        content_type="application/octet-stream", response={"type": "string", "format": "binary"},
        errors=(403,)),
    ("GET", "/v1/webhooks/deliveries"): Operation(
        query=(INBOX_ID, Param("status"), Param("endpoint"), _limit(50, 200), CURSOR),
        response=_page("WebhookDelivery")),
    ("GET", "/v1/webhooks/deliveries/{delivery_id}"): Operation(response=_data(_ref("WebhookDelivery"))),
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/retry"): Operation(
        response=_data(_ref("WebhookDelivery"))),
    ("GET", "/v1/webhooks/health"): Operation(query=(Param("period", _enum("24h", "7d", "30d", "90d")),)),
    ("GET", "/v1/audit-logs"): Operation(
        query=(Param("action", {"type": "string", "maxLength": 100}), _limit(50, 200), CURSOR),
        response=_page("AuditEntry")),
    ("POST", "/v1/data/deletion-request"): Operation(
        body=DeletionRequestBody, status=201, errors=(409,),
        response={"type": "object", "required": ["id", "confirmation_token"],
                  "properties": {"id": STR, "confirmation_token": STR,
                                 "scope": _enum("organization", "inbox", "messages", "email", "domain")}}),
    ("POST", "/v1/data/deletion-request/{deletion_id}/confirm"): Operation(errors=(409, 410)),
    ("GET", "/v1/data/deletion-request/{deletion_id}"): Operation(response=ID_OBJECT),
    ("GET", "/v1/delivery/events"): Operation(
        query=(INBOX_ID, DOMAIN_ID, Param("message_id", description="Only this message's events"),
               Param("event_type", _enum(*EVENT_TYPES)), _limit(50, 500), CURSOR),
        response=_page("DeliveryEvent")),
    ("GET", "/v1/delivery/suppressions"): Operation(
        query=(INBOX_ID, DOMAIN_ID, Param("email", description="Only this address"), _limit(50, 500), CURSOR),
        response=_page("Suppression")),
    ("POST", "/v1/delivery/suppressions"): Operation(body=AddSuppression, status=201,
                                                     response=_data(_ref("Suppression"))),
    ("DELETE", "/v1/delivery/suppressions/{email}"): Operation(response=OK),
    ("GET", "/v1/dmarc/reports"): Operation(query=(DMARC_DOMAIN, _limit(50, 200), CURSOR),
                                            response=_page("DmarcReport")),
    ("GET", "/v1/dmarc/reports/{report_id}"): Operation(response=_data(_ref("DmarcReport"))),
    ("GET", "/v1/dmarc/summary"): Operation(
        query=(DMARC_DOMAIN, Param("days", {**_int(1, 366), "default": 30},
                                   description="Reports whose period ends within this many days")),
        response={"type": "object", "required": ["domain", "totalMessages", "passed", "failed"],
                  "properties": {"domain": STR, "days": {"type": "integer"},
                                 "totalMessages": {"type": "integer"}, "passed": {"type": "integer"},
                                 "failed": {"type": "integer"}, "passRate": {"type": ["number", "null"]},
                                 "topFailingSources": {"type": "array"}}}),
    ("GET", "/v1/delivery/metrics"): Operation(
        query=(INBOX_ID, DOMAIN_ID, Param("period", {"type": "string", "pattern": r"^\s*[0-9]{1,4}[hdwHDW]\s*$"},
                                           description="A span such as 24h, 7d or 4w (at most 366d)")),
        response={**METRICS, "required": ["data", *METRICS["required"]],
                  "properties": {**METRICS["properties"], "data": METRICS}}),
}


def _model_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's validation schema (aliases as the wire spells them), nested models as components."""
    schema = model.model_json_schema(by_alias=True, mode="validation", ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return _ref(model.__name__)


def _error(status: int) -> dict[str, Any]:
    return {"description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": _ref("Error")}}}


def _operation(route: Route, op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
         "description": IDS}
        for name in route.params
    ]
    parameters += [
        {"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
         **({"description": p.description} if p.description else {})}
        for p in op.query
    ]
    statuses = [400, 404, 405]
    if route.scope is not None:
        statuses += [401, 403, 429]
    statuses += op.errors
    doc: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary or route.handler.__name__.replace("_", " "),
        "x-required-scope": route.scope,
        "security": [{"bearer": []}] if route.scope is not None else [],
        "parameters": parameters,
        "responses": {
            str(op.status): {"description": "Success",
                             "content": {op.content_type: {"schema": op.response}}},
            **({"202": {"description": "Accepted: held for approval or scheduled (`status` says which)",
                        "content": {op.content_type: {"schema": op.response}}}} if op.accepted else {}),
            **{str(s): _error(s) for s in sorted(set(statuses))},
        },
    }
    if op.body is not None or route.method in ("POST", "PUT", "PATCH"):
        schema = _model_schema(op.body, components) if op.body is not None else ANY_OBJECT
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if op.raw_upload:
            # Not a header parameter: with X-Filename present any body is taken as the file itself.
            content["application/octet-stream"] = {
                "schema": {"type": "string", "format": "binary"},
                "x-requires-header": "X-Filename: the file's name (percent-encoded)",
            }
        # An empty body reads as `{}`, so a body is only required when the model has required fields.
        required = op.body is not None and bool(op.body.model_json_schema().get("required"))
        doc["requestBody"] = {"required": required, "content": content}
    return doc


def _operation_id(route: Route) -> str:
    """A stable, unique id: the method and the path template spelled as one identifier."""
    words = re.findall(r"[a-z0-9]+", route.template.lower().replace("-", "_"))
    return "_".join([route.method.lower(), *words])


def build_document(routes: list[Route]) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for these routes."""
    components: dict[str, Any] = {name: dict(schema) for name, schema in SCHEMAS.items()}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op = OPERATIONS.get((route.method, route.template), Operation())
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route, op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Commune API", "version": __version__,
                 "description": "Self-hosted email for software agents. Errors are always "
                                "`{\"error\": \"...\"}`; validation errors are 400. "
                                "Surrounding whitespace in body strings is ignored before validation."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key: `Authorization: Bearer <key>`"}},
        },
    }
