"""Data deletion: what a scope covers, its exact preview, the purge itself and the request rows.

A scope is turned into a `Plan`: one `(collection, table, predicate)` step per table. The preview
counts with each step's predicate and the purge deletes with the very same predicate, so what was
previewed is what goes (the `messages` scope is pinned to the request's time, so later mail is not
swept up). The purge runs in ONE transaction: a failure anywhere leaves every row in place. Steps whose
predicates look at `messages` run before the messages step. Blob files are unlinked only after the
commit, and only when no remaining row of the same organisation references them (each organisation
has its own blob files); content the organisation receives again while a deletion is unlinking it can
lose its file (ingest writes blobs before its own transaction), a narrow window.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..mail.render import snippet
from ..util import new_prefixed, now_iso
from .blobs import BlobStore
from .database import Database

SCOPES = ("organization", "inbox", "messages", "email", "domain")

# The reference's collections. Those this server does not keep (no spam quarantine, alerts, sessions
# or verification tokens; keys belong to the organisation, not to user accounts, so `users` is always 0)
# are reported as 0 so clients see the documented shape.
REFERENCE_COLLECTIONS = (
    "messages", "attachments", "domains", "inboxes", "webhook_deliveries", "delivery_events",
    "blocked_spam", "thread_metadata", "dmarc_reports", "alerts", "suppressions", "spam_reports",
    "audit_logs", "users", "api_keys", "sessions", "verification_tokens",
)
# Tables of ours the reference does not name; reported beside its collections.
EXTRA_COLLECTIONS = ("outbound_queue", "idempotency_keys", "dmarc_records", "contacts", "organizations",
                     "outbox")

WARNINGS = {
    "organization": "This will permanently delete ALL data for your organization including domains, inboxes,"
                    " API keys, audit logs and the organization itself. This action cannot be undone.",
    "inbox": "This will permanently delete the inbox and all of its data: messages, threads, attachments,"
             " delivery events, webhook deliveries and suppressions. This action cannot be undone.",
    "messages": "This will permanently delete the matching messages, their attachments and threads left"
                " empty. This action cannot be undone.",
    "email": "This will permanently delete every message of your organization in which the address takes part"
             " (as sender, to, cc or bcc), with their attachments, delivery events, webhook deliveries and its"
             " contact entry;"
             " threads left empty are removed. A suppression of the address is kept so it is not mailed again."
             " This action cannot be undone.",
    "domain": "This will permanently delete the domain, all of its inboxes and all of their data: messages,"
              " threads, attachments, delivery events, webhook deliveries and suppressions. This action cannot"
              " be undone.",
}
# Drafts naming an address (to, cc, bcc, reply-to): an erasure of the address takes them too.
DRAFT_NAMING = ("EXISTS (SELECT 1 FROM json_tree(outbox.payload) AS t WHERE t.path IN ('$.to', '$.cc', '$.bcc',"
                " '$.reply_to') AND t.type = 'text' AND lower(t.value) = lower(?))")
# A message's participants (sender, to, cc, bcc) as addresses; `thread_participants` indexes them per thread.
PARTICIPANT_ADDRESS = "json_extract(j.value, '$.identity')"


@dataclass(frozen=True)
class Step:
    collection: str
    table: str
    where: str
    params: tuple


@dataclass
class Plan:
    steps: list[Step]
    message_where: str
    message_params: tuple
    attachment_where: str
    attachment_params: tuple
    rebuild_threads: bool = False


def _message_filter(org_id: str, params: dict) -> tuple[str, tuple]:
    """Predicate on `messages` for a scope's parameters (inbox, domain, a participant's address, `before`,
    and the request's own time)."""
    # With an address, the participant index leads (`+` keeps the other columns plain filters).
    lead = "+" if params.get("email") else ""
    clauses, values = [f"{lead}messages.org_id = ?"], [org_id]
    for column, key, op in (("inbox_id", "inbox_id", "="), ("domain_id", "domain_id", "="),
                            ("created_at", "before", "<"), ("created_at", "until", "<="),
                            ("id", "message_id", "=")):
        if params.get(key):
            clauses.append(f"{lead}messages.{column} {op} ?")
            values.append(params[key])
    if params.get("thread_ids"):
        clauses.append("messages.thread_id IN (SELECT value FROM json_each(?))")
        values.append(params["thread_ids"])
    if params.get("email"):
        # The threads the address takes part in (`with_threads`); each of their messages is then checked.
        clauses.append("messages.thread_id IN (SELECT value FROM json_each(?)) AND EXISTS (SELECT 1"
                       f" FROM json_each(messages.participants) AS j WHERE {PARTICIPANT_ADDRESS} = ?)")
        values += [params["threads"], params["email"]]
    return " AND ".join(clauses), tuple(values)


def dmarc_steps(where: str, params: tuple) -> list[Step]:
    """DMARC reports and their records matching `where` (on `org_id`, and `domain_id` for one domain).

    They belong to the domain, not to the report inbox: deleting that inbox or its messages keeps them.
    """
    return [Step("dmarc_records", "dmarc_records", where, params),
            Step("dmarc_reports", "dmarc_reports", where, params)]


def with_threads(conn: sqlite3.Connection, org_id: str, params: dict) -> dict:
    """`params`, plus for an address the threads it takes part in, read from the participant index once,
    before anything is deleted: the purge deletes threads, and their index rows with them."""
    if not params.get("email"):
        return params
    threads = [row[0] for row in conn.execute(
        "SELECT thread_id FROM thread_participants WHERE org_id = ? AND address = ?", (org_id, params["email"])
    )]
    return {**params, "threads": json.dumps(threads)}


def plan_for(org_id: str, scope: str, params: dict) -> Plan:
    """The steps a scope takes, in execution order."""
    if scope == "organization":
        own = ("org_id = ?", (org_id,))
        tables = [("attachments", "attachments"), ("thread_metadata", "threads"),
                  ("outbound_queue", "outbound_queue"), ("delivery_events", "delivery_events"),
                  ("webhook_deliveries", "webhook_deliveries"), ("suppressions", "suppressions"),
                  ("idempotency_keys", "idempotency_keys"), ("outbox", "outbox"), ("messages", "messages"),
                  ("inboxes", "inboxes"), ("domains", "domains"), ("api_keys", "api_keys"),
                  ("audit_logs", "audit_logs"), ("contacts", "contacts")]
        steps = [Step(name, table, *own) for name, table in tables]
        steps.extend(dmarc_steps(*own))
        steps.append(Step("organizations", "orgs", "id = ?", (org_id,)))
        return Plan(steps, "messages.org_id = ?", (org_id,), "org_id = ?", (org_id,))

    msg_where, msg_params = _message_filter(org_id, params)
    of_messages = f"SELECT messages.id FROM messages WHERE {msg_where}"
    # Uploaded files carry no message id; they go with the messages that list them, unless a message
    # that stays lists them too.
    listed = "SELECT j.value FROM messages, json_each(messages.attachment_ids) AS j WHERE {}"
    # `+org_id`: the message and id indexes lead, the organisation stays a filter.
    att_where = (f"+org_id = ? AND (message_id IN ({of_messages}) OR (+message_id IS NULL"
                 f" AND id IN ({listed.format(msg_where)})"
                 f" AND id NOT IN ({listed.format(f'messages.org_id = ? AND NOT ({msg_where})')})))")
    att_params = (org_id, *msg_params, *msg_params, org_id, *msg_params)
    queue = Step("outbound_queue", "outbound_queue", f"org_id = ? AND message_id IN ({of_messages})",
                 (org_id, *msg_params))
    messages = Step("messages", "messages", msg_where, msg_params)
    # A held or scheduled message's outbox row (it carries the message's content) goes with the message.
    held = Step("outbox", "outbox", f"org_id = ? AND id IN ({of_messages})", (org_id, *msg_params))

    if scope == "inbox":
        inbox_id = params["inbox_id"]
        att_where = f"org_id = ? AND (({att_where}) OR inbox_id = ?)"
        att_params = (org_id, *att_params, inbox_id)
        by_inbox = ("org_id = ? AND inbox_id = ?", (org_id, inbox_id))
        steps = [
            Step("attachments", "attachments", att_where, att_params),
            queue,
            Step("delivery_events", "delivery_events",
                 f"org_id = ? AND (inbox_id = ? OR message_id IN ({of_messages}))",
                 (org_id, inbox_id, *msg_params)),
            Step("thread_metadata", "threads", *by_inbox),
            Step("webhook_deliveries", "webhook_deliveries", *by_inbox),
            Step("suppressions", "suppressions", *by_inbox),
            Step("outbox", "outbox", f"org_id = ? AND (inbox_id = ? OR id IN ({of_messages}))",
                 (org_id, inbox_id, *msg_params)),
            messages,
            Step("inboxes", "inboxes", "org_id = ? AND id = ?", (org_id, inbox_id)),
        ]
        return Plan(steps, msg_where, msg_params, att_where, att_params)

    if scope == "domain":
        domain_id = params["domain_id"]
        inboxes = "SELECT id FROM inboxes WHERE domain_id = ? AND org_id = ?"
        att_where = f"org_id = ? AND (({att_where}) OR inbox_id IN ({inboxes}))"
        att_params = (org_id, *att_params, domain_id, org_id)
        by_domain = ("org_id = ? AND domain_id = ?", (org_id, domain_id))
        steps = [
            Step("attachments", "attachments", att_where, att_params),
            queue,
            Step("delivery_events", "delivery_events",
                 f"+org_id = ? AND (domain_id = ? OR message_id IN ({of_messages}))",
                 (org_id, domain_id, *msg_params)),
            Step("thread_metadata", "threads", *by_domain),
            Step("webhook_deliveries", "webhook_deliveries", f"+org_id = ? AND inbox_id IN ({inboxes})",
                 (org_id, domain_id, org_id)),
            Step("suppressions", "suppressions", f"org_id = ? AND (domain_id = ? OR inbox_id IN ({inboxes}))",
                 (org_id, domain_id, domain_id, org_id)),
            Step("outbox", "outbox", f"org_id = ? AND (inbox_id IN ({inboxes}) OR id IN ({of_messages}))",
                 (org_id, domain_id, org_id, *msg_params)),
            messages,
            Step("inboxes", "inboxes", *by_domain),
            *dmarc_steps(*by_domain),
            # The server's shared domain stays; only the organisation's inboxes on it go.
            Step("domains", "domains", "org_id = ? AND id = ? AND shared = 0", (org_id, domain_id)),
        ]
        return Plan(steps, msg_where, msg_params, att_where, att_params)

    emptied = (f"+org_id = ? AND id IN (SELECT messages.thread_id FROM messages WHERE {msg_where})"
               f" AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.thread_id = threads.id"
               f" AND NOT ({msg_where}))")
    steps = [Step("attachments", "attachments", att_where, att_params), queue, held]
    if scope == "email":
        # These records repeat the address (and the message), so an erasure takes them too.
        steps += [Step(name, name, f"+org_id = ? AND message_id IN ({of_messages})", (org_id, *msg_params))
                  for name in ("delivery_events", "webhook_deliveries")]
        # The address book entry names the person too.
        steps.append(Step("contacts", "contacts", "org_id = ? AND address = ?", (org_id, params["email"])))
        steps.append(Step("outbox", "outbox", f"org_id = ? AND status IN ('draft', 'sending') AND {DRAFT_NAMING}",
                          (org_id, params["email"])))
    steps += [
        Step("thread_metadata", "threads", emptied, (org_id, *msg_params, *msg_params)),
        messages,
    ]
    return Plan(steps, msg_where, msg_params, att_where, att_params, rebuild_threads=True)


def _empty_counts() -> dict[str, int]:
    return {name: 0 for name in (*REFERENCE_COLLECTIONS, *EXTRA_COLLECTIONS)}


def preview(conn: sqlite3.Connection, plan: Plan) -> dict[str, int]:
    """Rows each step would delete, counted with the purge's own predicates."""
    counts = _empty_counts()
    for step in plan.steps:
        counts[step.collection] += conn.execute(
            f"SELECT COUNT(*) FROM {step.table} WHERE {step.where}", step.params
        ).fetchone()[0]
    return counts


def purge(conn: sqlite3.Connection, plan: Plan) -> tuple[dict[str, int], list[str]]:
    """Delete every step's rows inside the caller's transaction; returns counts and candidate blobs."""
    blobs = [row[0] for row in conn.execute(
        f"SELECT sha256 FROM attachments WHERE {plan.attachment_where}"
        f" UNION SELECT raw_sha256 FROM messages WHERE {plan.message_where} AND raw_sha256 IS NOT NULL",
        (*plan.attachment_params, *plan.message_params),
    )]
    touched = []
    if plan.rebuild_threads:
        touched = [row[0] for row in conn.execute(
            f"SELECT DISTINCT messages.thread_id FROM messages WHERE {plan.message_where}",
            plan.message_params,
        )]
    counts = _empty_counts()
    for step in plan.steps:
        counts[step.collection] += conn.execute(
            f"DELETE FROM {step.table} WHERE {step.where}", step.params
        ).rowcount
    if touched:
        _rebuild_threads(conn, touched)
    return counts, blobs


def _rebuild_threads(conn: sqlite3.Connection, thread_ids: list[str]) -> None:
    """Bring the summaries and participants of threads that lost some messages back in line with what
    remains (the participant triggers keep `participant_count`)."""
    ids = json.dumps(thread_ids)
    conn.execute("DELETE FROM thread_participants WHERE thread_id IN (SELECT value FROM json_each(?))", (ids,))
    conn.execute(
        "INSERT OR IGNORE INTO thread_participants (thread_id, address, org_id)"
        f" SELECT messages.thread_id, {PARTICIPANT_ADDRESS}, messages.org_id"
        " FROM messages, json_each(messages.participants) AS j"
        f" WHERE messages.thread_id IN (SELECT value FROM json_each(?)) AND coalesce({PARTICIPANT_ADDRESS}, '') != ''",
        (ids,),
    )
    rows = conn.execute(
        "SELECT thread_id, n, inbound, first_at, last_at, with_files, direction, sender, text_body, html_body,"
        " json_extract(extra, '$.sender_name') AS sender_name FROM ("
        " SELECT messages.*, COUNT(*) OVER w AS n, SUM(CASE WHEN direction = 'inbound' THEN 1 ELSE 0 END) OVER w"
        " AS inbound,"
        " MIN(created_at) OVER w AS first_at,"
        " MAX(created_at) OVER w AS last_at, MAX(CASE WHEN attachment_ids != '[]' THEN 1 ELSE 0 END) OVER w"
        " AS with_files,"
        " ROW_NUMBER() OVER (PARTITION BY thread_id ORDER BY created_at DESC, seq DESC) AS pos"
        " FROM messages WHERE thread_id IN (SELECT value FROM json_each(?))"
        " WINDOW w AS (PARTITION BY thread_id)) AS summary WHERE pos = 1",
        (ids,),
    ).fetchall()
    # Unread mail that was deleted no longer counts as unread.
    conn.executemany(
        "UPDATE threads SET message_count = ?, unread_count = MIN(unread_count, ?), first_message_at = ?,"
        " last_message_at = ?, has_attachments = ?, last_direction = ?, last_sender = ?, last_sender_name = ?,"
        " snippet = ? WHERE id = ?",
        [(r["n"], r["inbound"], r["first_at"], r["last_at"], r["with_files"], r["direction"], r["sender"],
          r["sender_name"], snippet(r["text_body"], r["html_body"]), r["thread_id"]) for r in rows],
    )


def unlink_unreferenced(conn: sqlite3.Connection, blobs: BlobStore, org_id: str, candidates: list[str]) -> int:
    """Delete the organisation's blob files among `candidates` that none of its attachments or raw
    messages still references."""
    if not candidates:
        return 0
    still_used = {row[0] for row in conn.execute(
        "SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM attachments WHERE sha256 = value"
        " AND org_id = ?) OR EXISTS (SELECT 1 FROM messages WHERE raw_sha256 = value AND org_id = ?)",
        (json.dumps(candidates), org_id, org_id),
    )}
    gone = [digest for digest in candidates if digest not in still_used]
    for digest in gone:
        blobs.delete(org_id, digest)
    return len(gone)


def _request_json(row: sqlite3.Row) -> dict:
    item = {
        "id": row["id"], "scope": row["scope"], "status": row["status"], "preview": json.loads(row["preview"]),
        "confirm_by": row["confirm_by"], "created_at": row["created_at"],
    }
    params = json.loads(row["params"])
    for key in ("inbox_id", "domain_id", "email", "before"):
        if params.get(key):
            item[key] = params[key]
    if row["status"] == "pending" and row["confirm_by"] <= now_iso():
        item["status"] = "expired"
    if row["deleted_counts"] is not None:
        item["deleted_counts"] = json.loads(row["deleted_counts"])
        item["confirmed_at"] = row["confirmed_at"]
        item["completed_at"] = row["completed_at"]
    return item


class DeletionStore:
    """Deletion requests and their execution; the API and the retention worker share it."""

    def __init__(self, database: Database, blobs: BlobStore) -> None:
        self.database = database
        self.blobs = blobs

    def active_request(self, conn: sqlite3.Connection, org_id: str) -> sqlite3.Row | None:
        return conn.execute(
            "SELECT id FROM deletion_requests WHERE org_id = ? AND status = 'pending' AND confirm_by > ?",
            (org_id, now_iso()),
        ).fetchone()

    def create_request(
        self, org_id: str, scope: str, params: dict, confirm_by: str,
        log: Callable[[sqlite3.Connection, str], None],
    ) -> dict | None:
        """Store a pending request with its preview; None when the organisation already has an active one.

        `log(conn, request_id)` writes the audit entry first, so an organization preview counts it, plus
        the one entry the confirmation will write before the purge.
        """
        request_id = new_prefixed("del", 10)
        with self.database.transaction() as conn:
            if self.active_request(conn, org_id) is not None:
                return None
            log(conn, request_id)
            counts = preview(conn, plan_for(org_id, scope, with_threads(conn, org_id, params)))
            if scope == "organization":
                counts["audit_logs"] += 1
            conn.execute(
                "INSERT INTO deletion_requests (id, org_id, scope, params, status, preview, confirm_by, created_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (request_id, org_id, scope, json.dumps(params), json.dumps(counts), confirm_by, now_iso()),
            )
        return self.get_request(org_id, request_id)

    def get_request(self, org_id: str, request_id: str) -> dict | None:
        row = self.database.one(
            "SELECT * FROM deletion_requests WHERE id = ? AND org_id = ?", (request_id, org_id)
        )
        return _request_json(row) if row else None

    def execute_request(
        self, org_id: str, request_id: str, before_purge: Callable[[sqlite3.Connection], None]
    ) -> dict | None:
        """Run a pending request in one transaction; `before_purge(conn)` runs first (the audit entry).

        None when the request is no longer pending (a concurrent confirm got there first).
        """
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM deletion_requests WHERE id = ? AND org_id = ? AND status = 'pending'",
                (request_id, org_id),
            ).fetchone()
            if row is None:
                return None
            confirmed_at = now_iso()
            before_purge(conn)
            params = with_threads(conn, org_id, json.loads(row["params"]))
            counts, candidates = purge(conn, plan_for(org_id, row["scope"], params))
            conn.execute(
                "UPDATE deletion_requests SET status = 'completed', deleted_counts = ?, confirmed_at = ?,"
                " completed_at = ? WHERE id = ?",
                (json.dumps(counts), confirmed_at, now_iso(), request_id),
            )
        unlink_unreferenced(self.database, self.blobs, org_id, candidates)
        return self.get_request(org_id, request_id)

    def delete_inbox(self, org_id: str, inbox_id: str, before_purge: Callable[[sqlite3.Connection], None]) -> dict[str, int]:
        """Delete an inbox with all its data at once (the inbox DELETE route); one transaction."""
        with self.database.transaction() as conn:
            before_purge(conn)
            counts, candidates = purge(conn, plan_for(org_id, "inbox", {"inbox_id": inbox_id}))
        unlink_unreferenced(self.database, self.blobs, org_id, candidates)
        return counts

    def delete_messages(self, org_id: str, params: dict,
                        before_purge: Callable[[sqlite3.Connection], None] | None = None) -> dict[str, int]:
        """Delete messages now, without a request (retention, the trash, a message or thread DELETE); one
        transaction, `before_purge(conn)` (the audit entry) first. `thread_ids` (a JSON list) also removes
        those threads when they hold no message."""
        with self.database.transaction() as conn:
            if before_purge is not None:
                before_purge(conn)
            counts, candidates = purge(conn, plan_for(org_id, "messages", params))
            if params.get("thread_ids"):
                counts["thread_metadata"] += conn.execute(
                    "DELETE FROM threads WHERE id IN (SELECT value FROM json_each(?)) AND org_id = ?",
                    (params["thread_ids"], org_id)).rowcount
        unlink_unreferenced(self.database, self.blobs, org_id, candidates)
        return counts
