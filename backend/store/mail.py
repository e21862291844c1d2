"""Threads, messages and their attachments: ingest (threading, summaries, events) and idempotency keys.

Every message enters through `prepare` (blob writes, fsync'd, outside any transaction) and `store`
(the rows, inside one short transaction). `ingest` and `ingest_many` combine the two; after the
commit, `publish` puts the events on the bus.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..events import EventBus
from ..mail.extract import extract
from ..mail.model import IncomingMessage
from ..mail.render import html_to_text, snippet
from ..models.mail import message_json, thread_json
from ..util import new_attachment_id, new_message_id, new_thread_id, now_iso
from .bigrams import index_message as index_bigrams
from .blobs import BlobStore
from .database import Database
from .extracted import Extractions
from .mail_reads import MailReads, safe_filename
from .outbox import WAITING

TxHook = Callable[[sqlite3.Connection, dict, dict], None]
IDEMPOTENCY_SECONDS = 24 * 3600
PENDING = ""
DIFFERENT_REQUEST = "different request"
"""What claiming a key answers when it was first used for a request with another fingerprint."""
MAX_THREAD_REFERENCES = 50
QUARANTINE = "quarantine"
INBOUND_LABELS = ("received", "unread")
"""What every message that arrives starts with; `quarantine` is added when authentication asks for it."""
OUTBOUND_LABELS = ("sent",)


@dataclass
class Prepared:
    """One message ready to be stored: identifiers chosen and bytes already on disk."""

    inbox: dict
    msg: IncomingMessage
    direction: str
    message_id: str
    text: str
    raw_sha256: str | None
    new_attachments: list[dict]
    attachment_ids: list[str]
    thread_id: str | None = None
    delivery_status: str | None = None
    authentication: dict | None = None
    """SPF/DKIM/DMARC results of an inbound SMTP message (`mail.authentication`)."""
    labels: list[str] = field(default_factory=list)
    snippet: str = ""
    """The thread summary's one-line snippet of `text` (computed with the blob writes, off the event loop)."""
    extracted: dict | None = None
    """Codes and links, computed here only when the inbox's webhook payload needs them (store/extracted.py)."""

    @property
    def quarantined(self) -> bool:
        return QUARANTINE in self.labels


@dataclass
class Stored:
    """What `store` did with one message: its JSON, whether it was new, its thread's summary."""

    inbox: dict
    direction: str
    message: dict
    new: bool
    thread: dict | None = None
    extra: dict = field(default_factory=dict)


class MailStore(MailReads):
    """Writes of the mail aggregate (messages, threads, attachments, idempotency keys) over `MailReads`."""

    def __init__(self, database: Database, blobs: BlobStore, events: EventBus) -> None:
        super().__init__(database)
        self.blobs = blobs
        self.events = events
        self.extractions = Extractions(database)
        self.tx_hooks: list[TxHook] = []
        """Called inside the ingest transaction as `hook(conn, inbox, message_json)` for each new message."""
        self._purge_keys_after = 0.0

    # ingest ---------------------------------------------------------------------------------
    def ingest(self, inbox: dict, msg: IncomingMessage, direction: str = "inbound") -> tuple[dict, bool]:
        """Store one message (threaded, summarised, in one transaction); `False` means a duplicate."""
        return self.ingest_many([(inbox, msg)], direction)[0]

    def ingest_many(
        self, items: list[tuple[dict, IncomingMessage]], direction: str = "inbound"
    ) -> list[tuple[dict, bool]]:
        """Store a batch in ONE transaction (group commit); events are published after the commit."""
        prepared = [self.prepare(inbox, msg, direction) for inbox, msg in items]
        stored = self.store_all(prepared)
        return [(s.message, s.new) for s in stored]

    def store_all(
        self,
        prepared: list[Prepared],
        after: Callable[[sqlite3.Connection, list[Stored]], None] | None = None,
        keep: Callable[[sqlite3.Connection, list[Prepared]], list[Prepared]] | None = None,
    ) -> list[Stored]:
        """Store prepared messages in one transaction, run `after` inside it, then publish events.

        `keep`, when given, chooses inside the transaction which of `prepared` are stored.
        """
        with self.database.transaction() as conn:
            if keep is not None:
                prepared = keep(conn, prepared)
            stored = [self.store(conn, p) for p in prepared]
            if after is not None:
                after(conn, stored)
        self.publish(stored)
        return stored

    def still_hosted(self, conn: sqlite3.Connection, prepared: list[Prepared]) -> list[Prepared]:
        """The copies whose inbox still exists (one deleted since it was looked up gets nothing stored)."""
        ids = json.dumps(sorted({p.inbox["id"] for p in prepared}))
        live = {row[0] for row in conn.execute(
            "SELECT id FROM inboxes WHERE id IN (SELECT value FROM json_each(?))", (ids,))}
        return [p for p in prepared if p.inbox["id"] in live]

    def prepare(
        self,
        inbox: dict,
        msg: IncomingMessage,
        direction: str = "inbound",
        *,
        thread_id: str | None = None,
        attachment_ids: list[str] | None = None,
        delivery_status: str | None = None,
        fsync: bool = True,
    ) -> Prepared:
        """Write the raw message and new attachment bytes to the blob store (before any transaction).

        `attachment_ids` names attachments already stored (uploads an outbound message carries);
        without it, the message's own attachments become new rows. `fsync=False` leaves flushing to
        the caller (SMTP group commit syncs the whole filesystem once per group instead).
        """
        org_id = inbox["org_id"]
        raw_sha = self.blobs.put(org_id, msg.raw, fsync=fsync) if msg.raw else None
        new_rows: list[dict] = []
        if attachment_ids is None:
            for part in msg.attachments:
                new_rows.append({
                    "id": new_attachment_id(),
                    "filename": safe_filename(part.filename),
                    "mime_type": (part.mime_type or "application/octet-stream")[:255],
                    "size": len(part.content),
                    "sha256": self.blobs.put(org_id, part.content, fsync=fsync),
                })
            attachment_ids = [row["id"] for row in new_rows]
        text = msg.text if msg.text.strip() or not msg.html else html_to_text(msg.html)
        # The webhook payload is written in the ingest transaction, so its codes and links are found
        # here, off the event loop; every other message is extracted when first read.
        extracted = extract(msg.subject, text, msg.html) if direction == "inbound" and inbox.get(
            "webhook_endpoint") else None
        return Prepared(
            inbox=inbox, msg=msg, direction=direction, message_id=new_message_id(), text=text,
            raw_sha256=raw_sha, new_attachments=new_rows, attachment_ids=list(attachment_ids),
            thread_id=thread_id, delivery_status=delivery_status, extracted=extracted, snippet=snippet(text),
        )

    def store(self, conn: sqlite3.Connection, p: Prepared) -> Stored:
        """Insert one prepared message, its attachments and its thread summary (inside a transaction)."""
        inbox, msg = p.inbox, p.msg
        if p.direction == "inbound" and msg.smtp_message_id:
            # Two nodes storing the same message at once: the second waits for the first, then finds it.
            self.database.dialect.wait_for_same(conn, f"{inbox['id']} {msg.smtp_message_id}")
            existing = conn.execute(
                "SELECT * FROM messages WHERE inbox_id = ? AND smtp_message_id = ? AND direction = 'inbound'",
                (inbox["id"], msg.smtp_message_id),
            ).fetchone()
            if existing is not None:
                return Stored(inbox, p.direction, message_json(existing), False)
        created_at = now_iso()
        # A quarantined message never joins a conversation: a forged reply must not surface in a real thread.
        thread_id = p.thread_id or (new_thread_id() if p.quarantined else self._find_thread(conn, inbox["id"], msg))
        participants = [{"role": "sender", "identity": msg.sender}]
        for role, addresses in (("to", msg.to), ("cc", msg.cc), ("bcc", msg.bcc)):
            participants.extend({"role": role, "identity": a} for a in addresses)
        extra = {"inbox_address": inbox["address"]}
        if msg.sender_name:
            extra["sender_name"] = msg.sender_name
        if msg.headers.get("reply-to"):
            extra["reply_to"] = msg.headers["reply-to"]
        # A held or scheduled message is not `sent` (and has no Date) until it leaves (delivery/outbox.py).
        waiting = p.delivery_status in WAITING
        own = INBOUND_LABELS if p.direction == "inbound" else () if waiting else OUTBOUND_LABELS
        labels = sorted({*p.labels, *own})
        row = {
            "id": p.message_id, "org_id": inbox["org_id"], "thread_id": thread_id, "inbox_id": inbox["id"],
            "domain_id": inbox["domain_id"], "direction": p.direction, "sender": msg.sender,
            "participants": json.dumps(participants), "subject": msg.subject, "text_body": p.text,
            "html_body": msg.html, "smtp_message_id": msg.smtp_message_id, "in_reply_to": msg.in_reply_to,
            "refs": json.dumps(msg.references), "attachment_ids": json.dumps(p.attachment_ids),
            "delivery_status": p.delivery_status, "raw_sha256": p.raw_sha256, "extra": json.dumps(extra),
            "created_at": created_at, "labels": json.dumps(labels),
            "authentication": json.dumps(p.authentication) if p.authentication else None,
            "sent_at": None if waiting else msg.date, "filenames": " ".join(safe_filename(a.filename) for a in msg.attachments),
        }
        if p.extracted is not None:
            row["extracted"] = json.dumps(p.extracted, ensure_ascii=False)
        # The thread row comes first: the label triggers copy its keys into `thread_labels`.
        self._touch_thread(conn, thread_id, inbox, row, p.snippet, msg.sender_name or None, bool(p.attachment_ids),
                           p.quarantined)
        columns = ", ".join(row)
        seq = conn.execute(f"INSERT INTO messages ({columns}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values())).lastrowid
        index_bigrams(conn, seq, row["subject"], row["text_body"], row["filenames"], new=True)
        for att in p.new_attachments:
            conn.execute(
                "INSERT INTO attachments (id, org_id, message_id, inbox_id, filename, mime_type, size, sha256,"
                " source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'email', ?)",
                (att["id"], inbox["org_id"], p.message_id, inbox["id"], att["filename"], att["mime_type"],
                 att["size"], att["sha256"], created_at),
            )
        thread = thread_json(conn.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone())
        message = message_json(row)
        hooked = message
        if p.extracted is not None:
            self.extractions.remember(p.message_id, p.extracted)
            hooked = {**message, "extracted": p.extracted}
        for hook in self.tx_hooks:
            hook(conn, inbox, hooked)
        return Stored(inbox, p.direction, message, True, thread)

    def publish(self, stored: list[Stored]) -> None:
        """Announce new messages and their threads on the event bus (after the commit)."""
        for item in stored:
            if not item.new:
                continue
            inbox, message = item.inbox, item.message
            kind = "message.received" if item.direction == "inbound" else "message.sent"
            payload = {"message": message, "thread_id": message["thread_id"], "inbox_id": inbox["id"]}
            # A held or scheduled message is announced by its outbox event now and `message.sent` later.
            if message["metadata"].get("delivery_status") not in WAITING:
                self.events.publish(kind, inbox["org_id"], payload, inbox["id"], inbox["domain_id"])
            if item.thread is not None:
                self.events.publish("thread.updated", inbox["org_id"], item.thread, inbox["id"], inbox["domain_id"])

    def _find_thread(self, conn: sqlite3.Connection, inbox_id: str, msg: IncomingMessage) -> str:
        """The thread of the newest stored message this one answers (same inbox), else a new id."""
        candidates = [m for m in [msg.in_reply_to, *msg.references[-MAX_THREAD_REFERENCES:]] if m]
        if msg.smtp_message_id:
            # A copy sent to the inbox it came from joins its own outbound message's thread.
            candidates.append(msg.smtp_message_id)
        if candidates:
            marks = ",".join("?" * len(candidates))
            found = conn.execute(
                f"SELECT thread_id FROM messages WHERE inbox_id = ? AND smtp_message_id IN ({marks})"
                " ORDER BY seq DESC LIMIT 1",
                (inbox_id, *candidates),
            ).fetchone()
            if found is not None:
                return found[0]
        return new_thread_id()

    def _touch_thread(
        self, conn: sqlite3.Connection, thread_id: str, inbox: dict, row: dict, summary: str,
        name: str | None, has_attachments: bool, quarantined: bool = False,
    ) -> None:
        """Create the thread or bring its summary up to date with the message about to be stored.

        Bit 1 of `hidden` (quarantined, left out of the default lists) stays set while all its messages
        are quarantined; the label triggers keep bit 2 (trash), `labels` and `unread_count`.
        """
        updated = conn.execute(
            "UPDATE threads SET last_message_at = MAX(last_message_at, :at), message_count = message_count + 1,"
            " snippet = :snippet, last_direction = :direction, last_sender = :sender, last_sender_name = :name,"
            " has_attachments = MAX(has_attachments, :att),"
            " subject = CASE WHEN subject = '' THEN :subject ELSE subject END,"
            " hidden = (hidden & 2) | (hidden & :quarantined)"
            " WHERE id = :id AND org_id = :org",
            {"at": row["created_at"], "snippet": summary, "direction": row["direction"], "sender": row["sender"],
             "att": int(has_attachments), "subject": row["subject"], "id": thread_id, "name": name,
             "org": inbox["org_id"], "quarantined": int(quarantined)},
        ).rowcount
        if not updated:
            conn.execute(
                "INSERT INTO threads (id, org_id, inbox_id, domain_id, subject, first_message_at, last_message_at,"
                " message_count, snippet, last_direction, last_sender, has_attachments, hidden, last_sender_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                (thread_id, inbox["org_id"], inbox["id"], inbox["domain_id"], row["subject"], row["created_at"],
                 row["created_at"], summary, row["direction"], row["sender"], int(has_attachments),
                 int(quarantined), name),
            )

    # attachments ------------------------------------------------------------------------------
    def adopt_shared_blobs(self) -> int:
        """Move blob files from the older layout shared by all organisations into each referencing
        organisation's own tree (once, at start); returns how many references were moved."""
        if not self.blobs.has_shared_layout():
            return 0
        rows = self.database.query(
            "SELECT org_id, sha256 FROM attachments"
            " UNION SELECT org_id, raw_sha256 FROM messages WHERE raw_sha256 IS NOT NULL"
        )
        return self.blobs.adopt_shared_layout((row[0], row[1]) for row in rows)

    def create_attachment(self, org_id: str, filename: str, mime_type: str, size: int, sha256: str) -> dict:
        """The metadata row of an upload whose bytes are already in the blob store."""
        row = (new_attachment_id(), org_id, safe_filename(filename), mime_type, size, sha256, now_iso())
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO attachments (id, org_id, filename, mime_type, size, sha256, source, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'upload', ?)",
                row,
            )
        return self.get_attachment(org_id, row[0])  # type: ignore[return-value]

    # idempotency keys -----------------------------------------------------------------------
    def claim_idempotency_key(self, org_id: str, key: str, fingerprint: str) -> dict | str | None:
        """Reserve a key for a request with this fingerprint: None when the caller may proceed, the
        stored response for a repeat, PENDING while the first request with this key is still running,
        or DIFFERENT_REQUEST when the key was first used for another request."""
        now = time.time()
        with self.database.transaction() as conn:
            if now >= self._purge_keys_after:
                # Hourly, so the table holds about a day of keys and the sweep stays small.
                conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - IDEMPOTENCY_SECONDS,))
                self._purge_keys_after = now + 3600
            found = conn.execute(
                "SELECT response, request_hash, created_at FROM idempotency_keys WHERE org_id = ? AND key = ?",
                (org_id, key),
            ).fetchone()
            if found is not None and found["created_at"] > now - IDEMPOTENCY_SECONDS:
                # Keys stored before fingerprints were kept have none; they match any request.
                if found["request_hash"] not in ("", fingerprint):
                    return DIFFERENT_REQUEST
                return json.loads(found["response"]) if found["response"] != PENDING else PENDING
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys (org_id, key, response, request_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (org_id, key, PENDING, fingerprint, now),
            )
        return None

    def save_idempotency_key(self, org_id: str, key: str, response: dict) -> None:
        """Record the response a claimed key's first request produced, for its repeats."""
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET response = ? WHERE org_id = ? AND key = ?",
                (json.dumps(response), org_id, key),
            )

    def release_idempotency_key(self, org_id: str, key: str) -> None:
        """Forget a reservation whose request failed, so a retry can run."""
        with self.database.transaction() as conn:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE org_id = ? AND key = ? AND response = ?", (org_id, key, PENDING)
            )
