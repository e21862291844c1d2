"""Group commit for SMTP ingest: every message ready while the previous commit ran goes into the next one.

Parsing and blob writes (each fsync'd, in parallel worker threads) happen before a message gets here;
what is left is the row inserts, which run on the event loop in one short WAL transaction for the whole
group, so the shared connection is never used from two threads at once. A group that fails is retried
one session at a time, so one bad message cannot cost the others their `250`.
"""

from __future__ import annotations

import asyncio

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
            self._commit(group)

    def _commit(self, group: list[tuple[list[Prepared], asyncio.Future[list[str]]]]) -> None:
        try:
            stored = self.mail.store_all([p for prepared, _ in group for p in prepared])
        except Exception as exc:
            if len(group) > 1:
                for one in group:
                    self._commit([one])
            elif not group[0][1].done():
                group[0][1].set_exception(exc)
            return
        position = 0
        for prepared, future in group:
            ids = [s.message["message_id"] for s in stored[position:position + len(prepared)]]
            position += len(prepared)
            if not future.done():
                future.set_result(ids)
