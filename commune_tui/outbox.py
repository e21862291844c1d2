"""What has not left yet, for one inbox or all: messages awaiting approval, scheduled sends and drafts.

Plain Python over `CommuneClient` (no textual), shared by the Outbox screen and the mailbox tree's
Outbox counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .client import ApiError, CommuneClient
from .formatting import clean_line
from .models import Inbox, OutboxMessage, ServerDraft

MAX_ROWS = 1000
"""Rows fetched per tab; a queue longer than this is a backlog to work through, not to scroll."""

OUTBOX_EVENTS = ("message.scheduled", "message.pending_approval", "message.approved",
                 "message.rejected", "message.cancelled")

TABS = ("approvals", "scheduled", "drafts")

T = TypeVar("T")


@dataclass
class Outbox:
    """The three tabs' rows, and per tab the error that kept it empty (a server without the route)."""

    approvals: list[OutboxMessage] = field(default_factory=list)
    scheduled: list[OutboxMessage] = field(default_factory=list)
    drafts: list[ServerDraft] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)

    def count(self, tab: str) -> str:
        """`3`, or `1000+` when there were more rows than fetched."""
        rows = len(getattr(self, tab))
        return f"{rows}+" if tab in self.truncated else str(rows)



def waiting_notice(data: dict[str, Any]) -> str:
    """The toast for a `message.pending_approval` event: what waits, from whom, to whom."""
    message = data.get("message") if isinstance(data.get("message"), dict) else data
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    subject = message.get("subject") or metadata.get("subject") or "(no subject)"
    people = [p for p in message.get("participants") or [] if isinstance(p, dict)]
    sender = message.get("from") or next((p.get("identity") for p in people if p.get("role") == "sender"),
                                         None)
    to = message.get("to") or [p.get("identity") for p in people if p.get("role") == "to"]
    if isinstance(to, list):
        to = ", ".join(str(t) for t in to if t)
    parts = [f"“{subject}”"]
    if sender:
        parts.append(f"from {sender}")
    if to:
        parts.append(f"to {to}")
    return clean_line(" ".join(parts)) + ". Review it in the Outbox (O)."


async def _all_pages(fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
                     limit: int) -> tuple[list[T], bool]:
    """Rows from every page (keyset cursor), up to `limit`; and whether more were left."""
    rows: list[T] = []
    cursor: str | None = None
    while True:
        page, cursor = await fetch(cursor)
        rows.extend(page)
        if cursor is None or not page:
            return rows[:limit], len(rows) > limit
        if len(rows) >= limit:
            return rows[:limit], True


async def load_outbox(client: CommuneClient, inbox: Inbox | None = None, limit: int = MAX_ROWS) -> Outbox:
    """The outbox of `inbox`, or of every inbox when it is None; each tab fails on its own."""
    inbox_id = inbox.id if inbox else None
    page = min(limit, 200)
    outbox = Outbox()
    results = await asyncio.gather(
        _all_pages(lambda c: client.list_approvals(inbox_id, c, page), limit),
        _all_pages(lambda c: client.list_outbox("scheduled", inbox_id, c, page), limit),
        _all_pages(lambda c: client.list_drafts(inbox_id, c, page), limit),
        return_exceptions=True)
    for tab, result in zip(TABS, results):
        if isinstance(result, ApiError):
            outbox.errors[tab] = result.message
        elif isinstance(result, BaseException):
            raise result
        else:
            rows, more = result
            setattr(outbox, tab, rows)
            if more:
                outbox.truncated.add(tab)
    return outbox
