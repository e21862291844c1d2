"""Async client for the Commune API: one method per endpoint, typed results, one error type."""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from .formatting import clean_data, clean_text
from .models import (
    Attachment,
    AttachmentUrl,
    Contact,
    DeletionRequest,
    DnsRecord,
    Domain,
    Inbox,
    Message,
    OutboxCounts,
    OutboxMessage,
    Page,
    SendResult,
    ServerDraft,
    ServerEvent,
    ThreadSummary,
    Validation,
)

USER_AGENT = "commune-tui/0.1"


class ApiError(Exception):
    """A failed call: `status` is the HTTP status, 0 when the server could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        # Error texts can quote what a stranger sent (an address, a file name): clean them like mail.
        message = clean_text(message)
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.status == 0

    @property
    def refused_key(self) -> bool:
        return self.status in (401, 403)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return str(error or response.reason_phrase or f"HTTP {response.status_code}")


class CommuneClient:
    """Talks to one server with one key; owns its `httpx.AsyncClient`."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=timeout,
            transport=transport,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    params: dict[str, Any] | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self.http.request(method, path, json=json_body, params=params)
        except httpx.TransportError as exc:
            raise ApiError(0, f"Cannot reach the server at {self.base_url}: {exc}") from exc
        if not response.is_success:
            raise ApiError(response.status_code, _error_message(response))
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, "The server sent a response that is not JSON") from exc

    async def _data(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self._call(method, path, **kwargs)
        return body.get("data", body) if isinstance(body, dict) else body

    # Domains and inboxes

    async def list_domains(self) -> list[Domain]:
        """`GET /v1/domains`."""
        return [Domain.model_validate(d) for d in await self._data("GET", "/v1/domains")]

    async def create_domain(self, name: str) -> Domain:
        """`POST /v1/domains`."""
        return Domain.model_validate(await self._data("POST", "/v1/domains", json_body={"name": name}))

    async def domain_records(self, domain_id: str) -> list[DnsRecord]:
        """`GET /v1/domains/{id}/records`: the DNS records to publish."""
        rows = await self._data("GET", f"/v1/domains/{domain_id}/records")
        return [DnsRecord.model_validate(r) for r in rows]

    async def verify_domain(self, domain_id: str) -> str:
        """Ask the server to check the domain's DNS records; returns the new status."""
        result = await self._data("POST", f"/v1/domains/{domain_id}/verify")
        return clean_text(str(result.get("status") or ""))

    async def list_inboxes(self, domain_id: str | None = None) -> list[Inbox]:
        """`GET /v1/inboxes`, optionally one domain's."""
        rows = await self._data("GET", "/v1/inboxes", params={"domain_id": domain_id})
        return [Inbox.model_validate(i) for i in rows]

    async def create_inbox(self, local_part: str, domain_id: str | None = None, name: str | None = None,
                           webhook_endpoint: str | None = None) -> Inbox:
        """`POST /v1/inboxes`, with an optional webhook endpoint."""
        body: dict[str, Any] = {"local_part": local_part}
        if domain_id:
            body["domain_id"] = domain_id
        if name:
            body["name"] = name
        if webhook_endpoint:
            body["webhook"] = {"endpoint": webhook_endpoint, "events": ["email.received"]}
        return Inbox.model_validate(await self._data("POST", "/v1/inboxes", json_body=body))

    # Threads and messages

    async def list_threads(self, inbox_id: str | None = None, domain_id: str | None = None,
                           cursor: str | None = None, limit: int = 50, labels: list[str] | None = None,
                           exclude_labels: list[str] | None = None) -> Page:
        """`GET /v1/threads`: one newest-first page after `cursor`, with all of `labels` and none of
        `exclude_labels` (the trash is left out unless `labels` asks for it)."""
        body = await self._call("GET", "/v1/threads", params={
            "inbox_id": inbox_id, "domain_id": domain_id, "cursor": cursor, "limit": limit, "order": "desc",
            "labels": ",".join(labels) if labels else None,
            "exclude_labels": ",".join(exclude_labels) if exclude_labels else None,
        })
        return Page.model_validate(body)

    async def label_thread(self, thread_id: str, add: list[str] | None = None,
                           remove: list[str] | None = None) -> ThreadSummary:
        """`PATCH /v1/threads/{id}` with `add_labels`/`remove_labels` (every message of the thread)."""
        body = await self._data("PATCH", f"/v1/threads/{thread_id}",
                                json_body={"add_labels": add or [], "remove_labels": remove or []})
        return ThreadSummary.model_validate(body)

    async def delete_thread(self, thread_id: str) -> None:
        """`DELETE /v1/threads/{id}`: the thread and its messages, for good."""
        await self._call("DELETE", f"/v1/threads/{thread_id}")

    async def list_contacts(self, query: str = "", limit: int = 20) -> list[Contact]:
        """`GET /v1/contacts?q=`: addresses most recently exchanged with first."""
        rows = await self._data("GET", "/v1/contacts", params={"q": query or None, "limit": limit})
        return [Contact.model_validate(r) for r in rows]

    async def thread_messages(self, thread_id: str) -> list[Message]:
        """`GET /v1/threads/{id}/messages`, oldest first, every page."""
        messages: list[Message] = []
        cursor: str | None = None
        while True:
            body = await self._call("GET", f"/v1/threads/{thread_id}/messages",
                                    params={"order": "asc", "limit": 200, "cursor": cursor})
            messages.extend(Message.model_validate(m) for m in body.get("data", []))
            cursor = body.get("next_cursor")
            if not body.get("has_more") or not cursor:
                return messages

    async def message_source(self, message_id: str) -> dict[str, Any]:
        """`GET /v1/messages/{id}` as the server sent it (cleaned for the terminal)."""
        return clean_data(await self._data("GET", f"/v1/messages/{message_id}"))

    async def search_threads(self, query: str, inbox_id: str | None = None,
                             limit: int = 50) -> list[ThreadSummary]:
        """`GET /v1/search/threads`."""
        rows = await self._data("GET", "/v1/search/threads",
                                params={"q": query, "inbox_id": inbox_id, "limit": limit})
        return [ThreadSummary.model_validate({"last_message_at": r.get("last_activity", ""), **r})
                for r in rows]

    async def send(self, *, inbox_id: str, to: list[str], subject: str, text: str,
                   cc: list[str] | None = None, bcc: list[str] | None = None,
                   thread_id: str | None = None, attachments: list[str] | None = None,
                   send_at: str | None = None) -> SendResult:
        """`POST /v1/messages/send`; the result carries the recipient `validation`. With `send_at`
        (ISO 8601 with offset) the server holds it until then (`status: "scheduled"`)."""
        body: dict[str, Any] = {"inboxId": inbox_id, "to": to, "subject": subject, "text": text}
        for key, value in (("cc", cc), ("bcc", bcc), ("thread_id", thread_id), ("attachments", attachments),
                           ("send_at", send_at)):
            if value:
                body[key] = value
        return _send_result(await self._call("POST", "/v1/messages/send", json_body=body))

    # Attachments

    async def upload_attachment(self, path: Path) -> Attachment:
        """`POST /v1/attachments/upload` of a local file (base64 JSON)."""
        content = await _read_file(path)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body = {"content": base64.b64encode(content).decode(), "filename": path.name, "mime_type": mime}
        return Attachment.model_validate(await self._data("POST", "/v1/attachments/upload", json_body=body))

    async def get_attachment(self, attachment_id: str) -> Attachment:
        """`GET /v1/attachments/{id}`: metadata only."""
        return Attachment.model_validate(await self._data("GET", f"/v1/attachments/{attachment_id}"))

    async def attachment_url(self, attachment_id: str) -> AttachmentUrl:
        """`GET /v1/attachments/{id}/url`: a short-lived signed download link."""
        body = await self._data("GET", f"/v1/attachments/{attachment_id}/url", params={"expires_in": 300})
        return AttachmentUrl.model_validate(body)

    async def download_attachment(self, attachment_id: str) -> tuple[AttachmentUrl, bytes]:
        """Metadata and bytes of an attachment, fetched through its signed URL."""
        link = await self.attachment_url(attachment_id)
        try:
            response = await self.http.get(link.url, headers={"Authorization": ""})
        except httpx.TransportError as exc:
            raise ApiError(0, f"Cannot download {link.filename}: {exc}") from exc
        if not response.is_success:
            raise ApiError(response.status_code, _error_message(response))
        return link, response.content

    # Data deletion

    async def request_deletion(self, scope: str, inbox_id: str | None = None) -> DeletionRequest:
        """`POST /v1/data/deletion-request`: a preview and a token, nothing deleted."""
        body: dict[str, Any] = {"scope": scope}
        if inbox_id:
            body["inbox_id"] = inbox_id
        return DeletionRequest.model_validate(
            await self._data("POST", "/v1/data/deletion-request", json_body=body))

    async def confirm_deletion(self, request_id: str, token: str) -> DeletionRequest:
        """`POST /v1/data/deletion-request/{id}/confirm` with the token."""
        body = await self._data("POST", f"/v1/data/deletion-request/{request_id}/confirm",
                                json_body={"confirmation_token": token})
        return DeletionRequest.model_validate(body)

    # Outbox: drafts, scheduled sends, approvals

    async def list_drafts(self, inbox_id: str | None = None, cursor: str | None = None,
                          limit: int = 100) -> tuple[list[ServerDraft], str | None]:
        """`GET /v1/drafts`: one page and the cursor of the next (None at the end)."""
        body = await self._call("GET", "/v1/drafts", params={"inbox_id": inbox_id, "cursor": cursor,
                                                              "limit": limit})
        return [ServerDraft.model_validate(d) for d in body.get("data", [])], _next_cursor(body)

    async def get_draft(self, draft_id: str) -> ServerDraft:
        """`GET /v1/drafts/{id}`."""
        return ServerDraft.model_validate(await self._data("GET", f"/v1/drafts/{draft_id}"))

    async def save_draft(self, fields: dict[str, Any], draft_id: str | None = None) -> ServerDraft:
        """`POST /v1/drafts`, or `PATCH /v1/drafts/{id}` when `draft_id` is given."""
        if draft_id:
            body = await self._data("PATCH", f"/v1/drafts/{draft_id}", json_body=fields)
        else:
            body = await self._data("POST", "/v1/drafts", json_body=fields)
        return ServerDraft.model_validate(body)

    async def delete_draft(self, draft_id: str) -> None:
        """`DELETE /v1/drafts/{id}`."""
        await self._call("DELETE", f"/v1/drafts/{draft_id}")

    async def send_draft(self, draft_id: str) -> SendResult:
        """`POST /v1/drafts/{id}/send`: answers as `POST /v1/messages/send` does."""
        return _send_result(await self._call("POST", f"/v1/drafts/{draft_id}/send"))

    async def list_approvals(self, inbox_id: str | None = None, cursor: str | None = None,
                             limit: int = 100) -> tuple[list[OutboxMessage], str | None]:
        """`GET /v1/approvals`: messages waiting for a person, each with its recipient verdict."""
        body = await self._call("GET", "/v1/approvals", params={"inbox_id": inbox_id, "cursor": cursor,
                                                                 "limit": limit})
        return [OutboxMessage.model_validate(m) for m in body.get("data", [])], _next_cursor(body)

    async def list_outbox(self, status: str = "scheduled", inbox_id: str | None = None,
                          cursor: str | None = None, limit: int = 100,
                          ) -> tuple[list[OutboxMessage], str | None]:
        """`GET /v1/outbox`: held or scheduled messages with `status`, soonest first."""
        body = await self._call("GET", "/v1/outbox", params={
            "status": status, "inbox_id": inbox_id, "cursor": cursor, "limit": limit})
        return [OutboxMessage.model_validate(m) for m in body.get("data", [])], _next_cursor(body)

    async def outbox_counts(self, inbox_id: str | None = None) -> OutboxCounts:
        """`GET /v1/outbox/counts`: drafts, messages awaiting approval and scheduled ones."""
        return OutboxCounts.model_validate(await self._data("GET", "/v1/outbox/counts",
                                                            params={"inbox_id": inbox_id}))

    async def get_message(self, message_id: str) -> OutboxMessage:
        """`GET /v1/messages/{id}`, with its status."""
        return OutboxMessage.model_validate(await self._data("GET", f"/v1/messages/{message_id}"))

    async def approve(self, message_id: str, edits: dict[str, Any] | None = None) -> SendResult:
        """`POST /v1/messages/{id}/approve`, optionally with an edited subject, text or recipients."""
        return _send_result(await self._call("POST", f"/v1/messages/{message_id}/approve",
                                             json_body=edits or {}))

    async def reject(self, message_id: str, reason: str) -> None:
        """`POST /v1/messages/{id}/reject` with the reason the sender is told."""
        await self._call("POST", f"/v1/messages/{message_id}/reject", json_body={"reason": reason})

    async def cancel(self, message_id: str) -> None:
        """`POST /v1/messages/{id}/cancel`: stop a scheduled message before it leaves."""
        await self._call("POST", f"/v1/messages/{message_id}/cancel")

    # Live events

    async def events(self, last_event_id: str | None = None) -> AsyncIterator[ServerEvent]:
        """Server-sent events from `GET /v1/events`; raises ApiError (404 when the server has none)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=None)
        try:
            async with self.http.stream("GET", "/v1/events", headers=headers, timeout=timeout) as response:
                if not response.is_success:
                    await response.aread()
                    raise ApiError(response.status_code, _error_message(response))
                async for event in parse_sse(response.aiter_lines()):
                    yield event
        except httpx.TransportError as exc:
            raise ApiError(0, f"Lost the event stream: {exc}") from exc


def _send_result(raw: Any) -> SendResult:
    raw = raw if isinstance(raw, dict) else {}
    result = SendResult.model_validate(raw.get("data") or {})
    result.validation = Validation.model_validate(raw.get("validation") or {})
    return result


def _next_cursor(body: Any) -> str | None:
    if not isinstance(body, dict) or not body.get("has_more"):
        return None
    return body.get("next_cursor") or None


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[ServerEvent]:
    """Server-sent events from a line stream (comments and heartbeats skipped)."""
    event_id: str | None = None
    event_type = "message"
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield ServerEvent(id=event_id, type=event_type, data=_json_object("\n".join(data)))
            event_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            event_type = value
        elif field == "data":
            data.append(value)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


async def _read_file(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)
