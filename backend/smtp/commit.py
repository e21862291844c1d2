"""Group commit for mail writes: every message ready while the previous commit ran goes into the next one.

SMTP ingest and `POST /v1/messages/send` both come here. Composing or parsing and the blob writes (in
worker threads, not yet flushed) happen before; what is left is the row inserts, in one short
transaction for the whole group through `database.write` (in SQLite's writer thread, on its own
connection, so the inserts and their indexes run beside the event loop; on a worker thread with
PostgreSQL). One filesystem sync per group then makes the blobs and the rows durable
before any caller of the group hears `250` or `200`. A group that fails is retried one caller at a
time, so one bad message cannot cost the others theirs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..store.mail import MailStore, Prepared, Stored

After = Callable[[sqlite3.Connection, list[Stored]], None]


@dataclass
class Waiting:
    """One caller's copies, what to write beside them in the transaction, and where its answer goes."""

    prepared: list[Prepared]
    future: asyncio.Future[list[Stored]]
    after: After | None
    hosted_only: bool


class GroupCommit:
    def __init__(self, mail: MailStore) -> None:
        self.mail = mail
        self.pending: list[Waiting] = []
        self.flusher: asyncio.Task[None] | None = None

    async def submit(self, prepared: list[Prepared], after: After | None = None,
                     hosted_only: bool = False) -> list[Stored]:
        """Store one caller's copies; returns them once the transaction has committed and been synced.

        `after(conn, stored)` runs inside the transaction with this caller's copies. With
        `hosted_only`, a copy whose inbox no longer exists is not stored (SMTP looks inboxes up at
        RCPT, possibly long before), so the list returned may be shorter, or empty.
        """
        future: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self.pending.append(Waiting(prepared, future, after, hosted_only))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait until every submitted message is committed (used when the server stops)."""
        while self.flusher is not None and not self.flusher.done():
            await asyncio.shield(self.flusher)

    async def _flush(self) -> None:
        while self.pending:
            # One turn of the loop lets callers whose parse or compose just finished join this group.
            await asyncio.sleep(0)
            group, self.pending = self.pending, []
            answers = await self.mail.database.write(self._commit, group)
            # The answer promises the message is on disk: its blobs were written without fsync, so one
            # filesystem sync, off the loop, flushes the whole group's blobs and WAL frames together.
            try:
                await asyncio.to_thread(self.mail.database.sync_filesystem)
            except OSError as exc:
                answers = [(future, exc) for future, _ in answers]
            for future, outcome in answers:
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _commit(self, group: list[Waiting]) -> list[tuple[asyncio.Future[list[Stored]], list[Stored] | BaseException]]:
        """Commit the group (or, if that fails, each caller alone); the answer for each caller."""
        by_copy: dict[int, Stored] = {}
        kept: list[Prepared] = []

        def keep(conn: sqlite3.Connection, prepared: list[Prepared]) -> list[Prepared]:
            checked = [p for waiting in group if waiting.hosted_only for p in waiting.prepared]
            hosted = {id(p) for p in self.mail.still_hosted(conn, checked)} if checked else set()
            kept.extend(p for waiting in group for p in waiting.prepared
                        if not waiting.hosted_only or id(p) in hosted)
            return kept

        def after(conn: sqlite3.Connection, stored: list[Stored]) -> None:
            by_copy.update(zip(map(id, kept), stored, strict=True))
            for waiting in group:
                if waiting.after is not None:
                    waiting.after(conn, [by_copy[id(p)] for p in waiting.prepared if id(p) in by_copy])

        try:
            self.mail.store_all([p for waiting in group for p in waiting.prepared], after=after, keep=keep)
        except Exception as exc:
            if len(group) > 1:
                return [answer for one in group for answer in self._commit([one])]
            return [(group[0].future, exc)]
        return [(waiting.future, [by_copy[id(p)] for p in waiting.prepared if id(p) in by_copy])
                for waiting in group]
