"""Thread triage for the official CLI (PATCH, tags/remove) and MCP server (metadata, status, assign, tags).

The two clients use different paths for the same operations (CONTRACT.md §3.3, T3–T10); both work.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, field_validator

from ..http.errors import BadRequest, NotFound
from ..http.router import Route
from ..models.addressing import Strict
from ..models.mail import LabelChanges, thread_json
from ..store.triage import TooManyLabels, TooManyTags
from ._common import Context, data, parse_body, store_work
from .threads import own_thread

STATUSES = ("open", "needs_reply", "waiting", "closed")
MAX_TAG_LENGTH = 64
ASSIGNEE_ALIASES = AliasChoices("assigned_to", "assignedTo", "assignee")


def _clean_tags(value: list[str]) -> list[str]:
    tags = []
    for tag in value:
        text = tag.strip()
        if not text or len(text) > MAX_TAG_LENGTH or any(ord(c) < 32 for c in text):
            raise ValueError(f"each tag must be 1-{MAX_TAG_LENGTH} printable characters")
        tags.append(text)
    return list(dict.fromkeys(tags))


def _check_status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return value


class Tags(Strict):
    tags: list[str] = Field(min_length=1, max_length=50)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _clean_tags(value)


class ThreadPatch(LabelChanges):
    """`status`, `assigned_to`, `tags`, and labels added to or removed from every message of the thread."""

    model_config = Strict.model_config

    status: str | None = None
    assigned_to: str | None = Field(None, validation_alias=ASSIGNEE_ALIASES, max_length=320)
    tags: list[str] | None = Field(None, max_length=50)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        return _check_status(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return _clean_tags(value) if value is not None else None


class StatusBody(Strict):
    status: str

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        return _check_status(value)  # type: ignore[return-value]


class AssignBody(Strict):
    assigned_to: str | None = Field(validation_alias=ASSIGNEE_ALIASES, max_length=320)


def metadata_json(thread: dict[str, Any]) -> dict[str, Any]:
    return {"thread_id": thread["thread_id"], "tags": thread["tags"], "status": thread["status"],
            "assigned_to": thread["assigned_to"]}


def _apply(ctx: Context, changes: dict, add: list[str] | None = None, remove: list[str] | None = None,
           labels: tuple[list[str], list[str]] = ([], [])) -> dict:
    """Change a thread's triage fields and labels, announce it on the event bus, and return the thread JSON."""
    thread_id = ctx.params["thread_id"]
    try:
        row = ctx.services.triage.apply(ctx.org_id, thread_id, changes, add, remove, labels)
    except TooManyTags as exc:
        raise BadRequest(f"Invalid request: tags: {exc}") from exc
    except TooManyLabels as exc:
        raise BadRequest(f"Invalid request: add_labels: {exc}") from exc
    if row is None:
        raise NotFound("Thread not found")
    thread = thread_json(row)
    ctx.services.events.publish("thread.updated", ctx.org_id, thread, row["inbox_id"], row["domain_id"])
    return thread


@store_work
def get_thread(ctx: Context) -> dict:
    return data(thread_json(own_thread(ctx, ctx.params["thread_id"])))


@store_work
def patch_thread(ctx: Context) -> dict:
    body = parse_body(ctx.request, ThreadPatch)
    changes = {name: getattr(body, name) for name in body.model_fields_set - {"add_labels", "remove_labels"}}
    if changes.get("status", "") is None:
        raise BadRequest("Invalid request: status: must be one of " + ", ".join(STATUSES))
    if changes.get("tags", []) is None:
        raise BadRequest("Invalid request: tags: must be a list of strings")
    if "assigned_to" in changes:
        changes["assigned_to"] = changes["assigned_to"] or None
    return data(_apply(ctx, changes, labels=body.label_changes))


@store_work
def add_tags(ctx: Context) -> dict:
    return data(_apply(ctx, {}, add=parse_body(ctx.request, Tags).tags))


@store_work
def remove_tags(ctx: Context) -> dict:
    return data(_apply(ctx, {}, remove=parse_body(ctx.request, Tags).tags))


@store_work
def get_metadata(ctx: Context) -> dict:
    return data(metadata_json(thread_json(own_thread(ctx, ctx.params["thread_id"]))))


@store_work
def set_status(ctx: Context) -> dict:
    return data(metadata_json(_apply(ctx, {"status": parse_body(ctx.request, StatusBody).status})))


@store_work
def assign(ctx: Context) -> dict:
    assignee = parse_body(ctx.request, AssignBody).assigned_to
    return data(metadata_json(_apply(ctx, {"assigned_to": assignee or None})))


ONE = "/v1/threads/{thread_id}"

ROUTES = [
    Route("GET", ONE, get_thread, "threads:read", "A thread with its triage fields"),
    Route("PATCH", ONE, patch_thread, "threads:write", "Set a thread's status, assignee, tags or labels"),
    Route("POST", ONE + "/tags", add_tags, "threads:write", "Add tags to a thread"),
    Route("DELETE", ONE + "/tags", remove_tags, "threads:write", "Remove tags (JSON body) from a thread"),
    Route("POST", ONE + "/tags/remove", remove_tags, "threads:write", "Remove tags from a thread"),
    Route("GET", ONE + "/metadata", get_metadata, "threads:read", "A thread's triage metadata"),
    Route("PUT", ONE + "/status", set_status, "threads:write", "Set a thread's status"),
    Route("PUT", ONE + "/assign", assign, "threads:write", "Assign a thread (null unassigns)"),
]
