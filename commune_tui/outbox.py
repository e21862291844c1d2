"""What has not left yet, for one inbox or all: messages awaiting approval, scheduled sends and drafts.

Plain Python over `CommuneClient` (no textual), shared by the Outbox screen and the mailbox tree's
Outbox counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .client import ApiError, CommuneClient
from .formatting import clean_line
from .models import Inbox, OutboxCounts, OutboxMessage, ServerDraft

PAGE = 100
"""Rows fetched per tab at a time; more follow (keyset pages) as the cursor nears the end."""

OUTBOX_EVENTS = ("message.scheduled", "message.pending_approval", "message.approved",
                 "message.rejected", "message.cancelled")

TABS = ("approvals", "scheduled", "drafts")
COUNT_FIELDS = {"approvals": "pending_approval", "scheduled": "scheduled", "drafts": "drafts"}


@dataclass
class Outbox:
    """The three tabs' rows fetched so far with the cursor of each tab's next page, the server's
    counts, and per tab the error that kept it empty (a server without the route)."""

    approvals: list[OutboxMessage] = field(default_factory=list)
    scheduled: list[OutboxMessage] = field(default_factory=list)
    drafts: list[ServerDraft] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def count(self, tab: str) -> str:
        """The server's count, else `100+` while more pages wait, else the rows fetched."""
        if tab in self.totals:
            return str(self.totals[tab])
        rows = len(getattr(self, tab))
        return f"{rows}+" if tab in self.cursors else str(rows)


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


def page_fetcher(client: CommuneClient, tab: str, inbox: Inbox | None
                 ) -> Callable[[str | None], Awaitable[tuple[list[Any], str | None]]]:
    """The call that fetches one page of `tab` after a cursor."""
    inbox_id = inbox.id if inbox else None
    if tab == "approvals":
        return lambda cursor: client.list_approvals(inbox_id, cursor, PAGE)
    if tab == "scheduled":
        return lambda cursor: client.list_outbox("scheduled", inbox_id, cursor, PAGE)
    return lambda cursor: client.list_drafts(inbox_id, cursor, PAGE)


async def load_outbox(client: CommuneClient, inbox: Inbox | None = None) -> Outbox:
    """The first page of each tab of `inbox`'s outbox (every inbox's when None) and the counts; each
    tab fails on its own."""
    outbox = Outbox()
    results = await asyncio.gather(*(page_fetcher(client, tab, inbox)(None) for tab in TABS),
                                   client.outbox_counts(inbox.id if inbox else None), return_exceptions=True)
    for tab, result in zip(TABS, results):
        if isinstance(result, ApiError):
            outbox.errors[tab] = result.message
        elif isinstance(result, BaseException):
            raise result
        else:
            setattr(outbox, tab, result[0])
            if result[1]:
                outbox.cursors[tab] = result[1]
    counts = results[-1]
    if isinstance(counts, OutboxCounts):
        outbox.totals = {tab: getattr(counts, name) for tab, name in COUNT_FIELDS.items()}
    elif isinstance(counts, BaseException) and not isinstance(counts, ApiError):
        raise counts
    return outbox


async def load_more(client: CommuneClient, outbox: Outbox, tab: str, inbox: Inbox | None) -> int:
    """Fetch the next page of `tab` into `outbox`; the number of rows added (0 at the end)."""
    cursor = outbox.cursors.get(tab)
    if cursor is None:
        return 0
    rows, following = await page_fetcher(client, tab, inbox)(cursor)
    if outbox.cursors.get(tab) != cursor:
        return 0  # another call fetched this page meanwhile
    getattr(outbox, tab).extend(rows)
    if following:
        outbox.cursors[tab] = following
    else:
        del outbox.cursors[tab]
    return len(rows)
