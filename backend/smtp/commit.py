"""Group commit for SMTP ingest: every message ready while the previous commit ran goes into the next one.

Parsing and blob writes (in parallel worker threads, not yet flushed) happen before a message gets here;
what is left is the row inserts, which run on the event loop in one short WAL transaction for the whole
group, so the shared connection is never used from two threads at once. One filesystem sync per group
then makes the blobs and the rows durable before any session of the group hears `250`. A group that fails is retried
one session at a time, so one bad message cannot cost the others their `250`.
"""

from __future__ import annotations

import asyncio
import sqlite3

from ..store.mail import MailStore, Prepared


class GroupCommit:
    def __init__(self, mail: MailStore) -> None:
        self.mail = mail
        self.pending: list[tuple[list[Prepared], asyncio.Future[list[str]]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def submit(self, prepared: list[Prepared]) -> list[str]:
        """Store one session's copies; returns their message ids once the transaction has committed."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self.pending.append((prepared, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait until every submitted message is committed (used when the server stops)."""
        while self.flusher is not None and not self.flusher.done():
            await asyncio.shield(self.flusher)

    async def _flush(self) -> None:
        while self.pending:
            # One turn of the loop lets sessions whose parse just finished join this group.
            await asyncio.sleep(0)
            group, self.pending = self.pending, []
            answers = self._commit(group)
            # The 250 promises the message is on disk: its blobs were written without fsync, so one
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

    def _commit(self, group: list[tuple[list[Prepared], asyncio.Future[list[str]]]]
                ) -> list[tuple[asyncio.Future[list[str]], list[str] | BaseException]]:
        """Commit the group (or, if that fails, each session alone); the answer for each session.

        The inboxes were looked up at RCPT: a copy whose inbox was deleted since is not stored, and a
        session left with no copy gets an empty list (its message is refused, never acknowledged).
        """
        kept: list[Prepared] = []

        def keep(conn: sqlite3.Connection, prepared: list[Prepared]) -> list[Prepared]:
            kept.extend(self.mail.still_hosted(conn, prepared))
            return kept

        try:
            stored = self.mail.store_all([p for prepared, _ in group for p in prepared], keep=keep)
        except Exception as exc:
            if len(group) > 1:
                return [answer for one in group for answer in self._commit([one])]
            return [(group[0][1], exc)]
        ids = {id(p): s.message["message_id"] for p, s in zip(kept, stored, strict=True)}
        return [(future, [ids[id(p)] for p in prepared if id(p) in ids]) for prepared, future in group]
