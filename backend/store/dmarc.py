"""DMARC aggregate reports: one row per report message, one per report record, and the figures over them.

A report row is written `pending` in the transaction that stores its message, so a report can never be
lost between the SMTP `250` and the parse; the worker then makes it `parsed`, `failed` (with `error`) or
`duplicate`. Records are written in chunks; the figures count records of `parsed` reports only, so a
report half-written when the process died (it is still `pending` and is parsed again) counts nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from ..util import new_prefixed, now_iso
from .database import Database

if TYPE_CHECKING:
    from ..dmarc.parse import AggregateReport, Record

TOP_SOURCES = 10
PARSED_OF_DOMAIN = "SELECT seq FROM dmarc_reports WHERE domain_id = ? AND org_id = ? AND status = 'parsed'"


def _report(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["policy"] = json.loads(item["policy"])
    return item


def _record(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["reasons"] = json.loads(item["reasons"])
    item["auth_results"] = json.loads(item["auth_results"])
    item["passed"] = bool(item["passed"])
    return item


class DmarcStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # the worker's side ------------------------------------------------------------------------
    @staticmethod
    def enqueue(conn: sqlite3.Connection, inbox: dict, message: dict) -> None:
        """Inside the ingest transaction: a `pending` report for a message to a report inbox."""
        conn.execute(
            "INSERT OR IGNORE INTO dmarc_reports (id, org_id, domain_id, inbox_id, message_id, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (new_prefixed("dmarc", 12), inbox["org_id"], inbox["domain_id"], inbox["id"], message["message_id"],
             message.get("created_at") or now_iso()),
        )

    def pending(self, limit: int) -> list[dict]:
        rows = self.database.query(
            "SELECT * FROM dmarc_reports WHERE status = 'pending' ORDER BY seq LIMIT ?", (limit,)
        )
        return [_report(row) for row in rows]

    def message_parts(self, org_id: str, message_id: str) -> tuple[str, list[dict]] | None:
        """A report message's text body and its attachments (name, type, size, blob), or None if deleted."""
        message = self.database.one(
            "SELECT text_body FROM messages WHERE id = ? AND org_id = ?", (message_id, org_id)
        )
        if message is None:
            return None
        attachments = self.database.query(
            "SELECT filename, mime_type, size, sha256 FROM attachments WHERE message_id = ? AND org_id = ?"
            " ORDER BY rowid",
            (message_id, org_id),
        )
        return message["text_body"], [dict(row) for row in attachments]

    def fail(self, seq: int, error: str, status: str = "failed") -> None:
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM dmarc_records WHERE report_seq = ?", (seq,))
            conn.execute(
                "UPDATE dmarc_reports SET status = ?, error = ?, processed_at = ? WHERE seq = ?",
                (status, error[:500], now_iso(), seq),
            )

    def already_parsed(self, domain_id: str, report: AggregateReport) -> str | None:
        """The id of a parsed report with the same reporter and report id (a resent report)."""
        row = self.database.one(
            "SELECT id FROM dmarc_reports WHERE domain_id = ? AND report_id = ? AND reporter_org = ?"
            " AND status = 'parsed'",
            (domain_id, report.report_id, report.reporter_org),
        )
        return row["id"] if row else None

    def clear_records(self, seq: int) -> None:
        """Records left by a parse the process did not finish."""
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM dmarc_records WHERE report_seq = ?", (seq,))

    def add_records(self, row: dict, date_end: str, records: list[Record]) -> None:
        with self.database.transaction() as conn:
            conn.executemany(
                "INSERT INTO dmarc_records (report_seq, org_id, domain_id, date_end, source_ip, count, disposition,"
                " dkim, spf, passed, header_from, envelope_from, envelope_to, reasons, auth_results)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(row["seq"], row["org_id"], row["domain_id"], date_end, r.source_ip, r.count, r.disposition,
                  r.dkim, r.spf, int(r.passed), r.header_from, r.envelope_from, r.envelope_to,
                  json.dumps(r.reasons), json.dumps(r.auth_results)) for r in records],
            )

    def finish(self, seq: int, report: AggregateReport, begin: str, end: str) -> None:
        passed = sum(r.count for r in report.records if r.passed)
        total = sum(r.count for r in report.records)
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE dmarc_reports SET status = 'parsed', error = NULL, reporter_org = ?, reporter_email = ?,"
                " report_id = ?, date_begin = ?, date_end = ?, policy = ?, record_count = ?, message_count = ?,"
                " pass_count = ?, fail_count = ?, processed_at = ? WHERE seq = ?",
                (report.reporter_org, report.reporter_email, report.report_id, begin, end,
                 json.dumps(report.policy), len(report.records), total, passed, total - passed, now_iso(), seq),
            )

    # the API's side ---------------------------------------------------------------------------
    def list_reports(self, org_id: str, domain_id: str, limit: int, before_seq: int | None) -> list[dict]:
        """Newest first by arrival (`seq`), `limit + 1` rows for the pager."""
        rows = self.database.query(
            "SELECT * FROM dmarc_reports WHERE domain_id = ? AND org_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (domain_id, org_id, before_seq if before_seq is not None else 2**63 - 1, limit + 1),
        )
        return [_report(row) for row in rows]

    def get_report(self, org_id: str, report_id: str) -> dict | None:
        row = self.database.one("SELECT * FROM dmarc_reports WHERE id = ? AND org_id = ?", (report_id, org_id))
        return _report(row) if row else None

    def records(self, seq: int) -> list[dict]:
        rows = self.database.query("SELECT * FROM dmarc_records WHERE report_seq = ? ORDER BY rowid", (seq,))
        return [_record(row) for row in rows]

    def summary(self, org_id: str, domain_id: str, since: str) -> dict:
        """Figures over the records of parsed reports whose period ends at or after `since`."""
        groups = self.database.query(
            "SELECT disposition, dkim = 'pass' AS dkim_pass, spf = 'pass' AS spf_pass, passed, SUM(count) AS n"
            f" FROM dmarc_records WHERE domain_id = ? AND date_end >= ? AND report_seq IN ({PARSED_OF_DOMAIN})"
            " GROUP BY disposition, dkim_pass, spf_pass, passed",
            (domain_id, since, domain_id, org_id),
        )
        top = self.database.query(
            "SELECT source_ip, SUM(count) AS n, COUNT(DISTINCT report_seq) AS reports FROM dmarc_records"
            f" WHERE domain_id = ? AND date_end >= ? AND passed = 0 AND report_seq IN ({PARSED_OF_DOMAIN})"
            " GROUP BY source_ip ORDER BY n DESC, source_ip LIMIT ?",
            (domain_id, since, domain_id, org_id, TOP_SOURCES),
        )
        statuses = self.database.query(
            "SELECT status, COUNT(*) AS n FROM dmarc_reports WHERE domain_id = ? AND org_id = ?"
            " AND COALESCE(date_end, received_at) >= ? GROUP BY status",
            (domain_id, org_id, since),
        )
        totals = {"messages": 0, "passed": 0, "dkim_passed": 0, "spf_passed": 0}
        dispositions: dict[str, int] = {}
        for group in groups:
            totals["messages"] += group["n"]
            totals["passed"] += group["n"] if group["passed"] else 0
            totals["dkim_passed"] += group["n"] if group["dkim_pass"] else 0
            totals["spf_passed"] += group["n"] if group["spf_pass"] else 0
            dispositions[group["disposition"]] = dispositions.get(group["disposition"], 0) + group["n"]
        return {
            **totals,
            "dispositions": dispositions,
            "reports": {row["status"]: row["n"] for row in statuses},
            "top_failing": [dict(row) for row in top],
        }
