"""The report worker: parses report mail after it is stored, never on the SMTP path.

A message to a report inbox gets a `pending` report row in its own ingest transaction (the tx hook: one
string comparison for every other message). The worker reads pending rows in arrival order, parses each
in a worker thread and stores the figures; the state is all in the database, so a restart picks up
what was pending, and a report is parsed once. Anything wrong with a report (or with our handling of
it) marks that one report `failed` with a reason; the message stays in the inbox either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from typing import TYPE_CHECKING

from ..dns.records import DMARC_REPORT_LOCAL_PART
from ..store.database import after_commit
from ..store.dmarc import DmarcStore
from ..util import iso
from .parse import AggregateReport, ReportError, find_payload, read_report

if TYPE_CHECKING:
    from ..server import Server
    from ..services import Services

log = logging.getLogger("commune.dmarc")

POLL_SECONDS = 30.0
BATCH = 20
CHUNK = 1000
"""Records written per transaction, yielding the loop in between, so a large report never stalls it."""
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


class ReportWorker:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store: DmarcStore = services.dmarc
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # the ingest hook -------------------------------------------------------------------------
    def on_new_message(self, conn: sqlite3.Connection, inbox: dict, message: dict) -> None:
        """Inside the ingest transaction: a message to a report inbox becomes a pending report."""
        if inbox.get("local_part") != DMARC_REPORT_LOCAL_PART or message.get("direction") != "inbound":
            return
        if inbox.get("domain_name") == self.services.settings.default_domain:
            return  # the shared domain publishes no DMARC record of ours; its reports are nobody's
        self.store.enqueue(conn, inbox, message)
        after_commit(conn, self.wake)

    def wake(self) -> None:
        """Look for pending reports now; safe to call from any thread."""
        if self.loop is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._wakeup.set)

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="dmarc-reports")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            rows: list[dict] = []
            try:
                rows = await self.services.database.run(self.store.pending, BATCH)
                for row in rows:
                    await self.process(row)
            except Exception:
                log.exception("reading pending DMARC reports failed; trying again later")
                rows = []
            if len(rows) == BATCH:
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)
            except TimeoutError:
                pass

    # one report ------------------------------------------------------------------------------
    async def process(self, row: dict) -> None:
        """Parse and store one pending report; whatever goes wrong marks only this report failed."""
        try:
            await self._process(row)
        except ReportError as exc:
            await self.services.database.run(self.store.fail, row["seq"], str(exc))
        except Exception as exc:
            log.exception("DMARC report %s could not be processed", row["id"])
            await self.services.database.run(
                self.store.fail, row["seq"], f"internal error while reading the report ({exc.__class__.__name__})")

    async def _process(self, row: dict) -> None:
        parts, domain = await self.services.database.run(self._message_and_domain, row)
        if parts is None or domain is None:
            raise ReportError("the report message was deleted before it was read")
        report = await asyncio.to_thread(self._read, row["org_id"], *parts)
        about = report.policy["domain"]
        if about != domain["name"] and not about.endswith("." + domain["name"]):
            raise ReportError(f"the report is about {about[:100]}, not {domain['name']} or its subdomains")
        duplicate = await self.services.database.run(self.store.already_parsed, domain["id"], report)
        if duplicate is not None:
            await self.services.database.run(self.store.fail, row["seq"], f"the same report as {duplicate} (sent again)",
                                             status="duplicate")
            return
        await self._save(row, report)

    def _message_and_domain(self, row: dict) -> tuple[tuple[str, list[dict]] | None, dict | None]:
        """The report message's text and attachments, and the domain it reports on."""
        return (self.store.message_parts(row["org_id"], row["message_id"]),
                self.services.domains.get_domain_any(row["domain_id"]))

    def _read(self, org_id: str, text: str, attachments: list[dict]) -> AggregateReport:
        """In a worker thread: find the report in the message, read its bytes, parse it."""
        payload = find_payload(attachments, text)
        if payload is None:
            raise ReportError("no report found: no gzip, zip or XML attachment and the body is not XML")
        if isinstance(payload, str):
            # The body was decoded by its MIME charset already; a declaration naming another would mislead.
            return read_report(_XML_DECLARATION.sub("", payload).encode("utf-8"))
        try:
            data = self.services.blobs.get(org_id, payload["sha256"])
        except (OSError, ValueError):
            raise ReportError("the report attachment's bytes are missing") from None
        return read_report(data)

    async def _save(self, row: dict, report: AggregateReport) -> None:
        end, run = iso(report.date_end), self.services.database.run
        await run(self.store.clear_records, row["seq"])
        for start in range(0, len(report.records), CHUNK):
            await run(self.store.add_records, row, end, report.records[start:start + CHUNK])
            await asyncio.sleep(0)
        await run(self.store.finish, row["seq"], report, iso(report.date_begin), end)


async def start(server: Server) -> None:
    """Component entry: hook report mail into ingest and run the worker."""
    services = server.services
    worker = ReportWorker(services)
    services.mail.tx_hooks.append(worker.on_new_message)
    if not services.settings.workers_enabled:
        return
    await worker.start()
    server.on_stop(worker.stop)
