"""The `extracted` codes and links of stored messages: computed once per message, then kept in its row.

Extraction is not on the SMTP hot path. It costs tens of µs for a plain-text mail but 0.5–1.5 ms
for an HTML one (html.parser), as much as the rest of ingest, so a message is extracted the first
time something reads it (an API read, a waiter, its webhook) and the result is stored in
`messages.extracted`: later pages read a short JSON column. Only inboxes with a webhook pay at ingest
(in the parse worker thread, `MailStore.prepare`), because their payload is written with the message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..mail.extract import extract
from .database import Database

log = logging.getLogger("commune.extracted")

MEMO_SIZE = 256
"""Recent results by message id, so many waiters on one inbox extract an arriving message once."""
INLINE_CHARS = 16_000
"""Bodies up to this size are extracted on the event loop (a few ms at most); larger ones in a thread."""


def extract_message(message: dict[str, Any]) -> dict[str, Any]:
    """Codes and links of a message as the API shows it (`message_json`)."""
    subject = (message.get("metadata") or {}).get("subject") or ""
    return extract(subject, message.get("content") or "", message.get("content_html"))


def _size(message: dict[str, Any]) -> int:
    return len(message.get("content") or "") + len(message.get("content_html") or "")


def _stored(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


class Extractions:
    """Reads and fills `messages.extracted`; every write only fills a value that is still missing."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._memo: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._saving: set[asyncio.Task[None]] = set()

    def remember(self, message_id: str, value: dict[str, Any]) -> None:
        self._memo[message_id] = value
        self._memo.move_to_end(message_id)
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)

    async def _compute(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if sum(_size(m) for m in messages) <= INLINE_CHARS:
            return [extract_message(m) for m in messages]
        return await asyncio.to_thread(lambda: [extract_message(m) for m in messages])

    def _save(self, values: dict[str, dict[str, Any]]) -> None:
        with self.database.transaction() as conn:
            conn.executemany(
                "UPDATE messages SET extracted = ? WHERE id = ? AND extracted IS NULL",
                [(json.dumps(v, ensure_ascii=False), message_id) for message_id, v in values.items()],
            )

    async def attach(self, rows: Sequence[Any], messages: list[dict[str, Any]]) -> None:
        """Set `extracted` on each message JSON (of the row beside it): stored, remembered, or computed
        now in one batch and stored for the next read."""
        missing: list[dict[str, Any]] = []
        for row, message in zip(rows, messages, strict=True):
            value = _stored(row["extracted"]) or self._memo.get(message["id"])
            if value is None:
                missing.append(message)
            else:
                message["extracted"] = value
        if not missing:
            return
        values = await self._compute(missing)
        for message, value in zip(missing, values, strict=True):
            message["extracted"] = value
            self.remember(message["id"], value)
        await self.database.run(self._save, {m["id"]: v for m, v in zip(missing, values, strict=True)})

    def now(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Codes and links of a message that has just arrived, without waiting: remembered, or computed
        here when the message is small enough for the loop (and stored in the background); None when
        only `of_message` can tell (a large message, or one being computed)."""
        message_id = message["id"]
        value = self._memo.get(message_id)
        if value is not None or message_id in self._pending or _size(message) > INLINE_CHARS:
            return value
        value = extract_message(message)
        self.remember(message_id, value)
        task = asyncio.get_running_loop().create_task(self.database.run(self._save, {message_id: value}))
        self._saving.add(task)
        task.add_done_callback(self._saved)
        return value

    def _saved(self, task: asyncio.Task[None]) -> None:
        self._saving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Only a cache of what reading the message computes again: the next read stores it.
            log.warning("could not store a message's codes and links: %s", task.exception())

    async def of_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """Codes and links of a message that has just arrived (a live event), computed once for all waiters."""
        message_id = message["id"]
        value = self._memo.get(message_id)
        if value is not None:
            return value
        if message_id in self._pending:
            return await asyncio.shield(self._pending[message_id])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            value = (await self._compute([message]))[0]
            self.remember(message_id, value)
            await self.database.run(self._save, {message_id: value})
            future.set_result(value)
            return value
        finally:
            if not future.done():
                future.cancel()
            del self._pending[message_id]
