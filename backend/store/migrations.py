"""Ordered schema migrations; `PRAGMA user_version` records how many have run.

Append new migrations to the end of MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

INITIAL = """
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL DEFAULT 'self-hosted',
    status TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL DEFAULT '',
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_keys_org ON api_keys(org_id, created_at);

CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    org_id TEXT,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'not_started',
    region TEXT NOT NULL DEFAULT 'us-east-1',
    records TEXT NOT NULL DEFAULT '[]',
    dkim_selector TEXT NOT NULL DEFAULT 'commune',
    dkim_private_key TEXT,
    shared INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    verified_at TEXT
);
CREATE INDEX domains_org ON domains(org_id, created_at);

CREATE TABLE inboxes (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES domains(id),
    local_part TEXT NOT NULL,
    address TEXT NOT NULL UNIQUE,
    display_name TEXT,
    status TEXT,
    webhook_endpoint TEXT,
    webhook_events TEXT,
    webhook_secret TEXT,
    extraction_schema TEXT,
    retention_days INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (domain_id, local_part)
);
CREATE INDEX inboxes_org ON inboxes(org_id, created_at);
CREATE INDEX inboxes_domain ON inboxes(domain_id, org_id);

CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    first_message_at TEXT NOT NULL,
    last_message_at TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0,
    snippet TEXT NOT NULL DEFAULT '',
    last_direction TEXT NOT NULL DEFAULT 'inbound',
    last_sender TEXT NOT NULL DEFAULT '',
    has_attachments INTEGER NOT NULL DEFAULT 0,
    unread_count INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'open',
    assigned_to TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX threads_inbox_order ON threads(inbox_id, last_message_at, id);
CREATE INDEX threads_domain_order ON threads(domain_id, last_message_at, id);

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    participants TEXT NOT NULL DEFAULT '[]',
    subject TEXT NOT NULL DEFAULT '',
    text_body TEXT NOT NULL DEFAULT '',
    html_body TEXT,
    smtp_message_id TEXT,
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '[]',
    attachment_ids TEXT NOT NULL DEFAULT '[]',
    delivery_status TEXT,
    raw_sha256 TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX messages_thread ON messages(thread_id, created_at, seq);
CREATE INDEX messages_inbox ON messages(inbox_id, created_at, seq);
CREATE INDEX messages_domain ON messages(domain_id, created_at, seq);
CREATE INDEX messages_sender ON messages(org_id, sender, created_at, seq);
CREATE INDEX messages_org ON messages(org_id, created_at, seq);
CREATE INDEX messages_smtp_id ON messages(inbox_id, smtp_message_id);
CREATE UNIQUE INDEX messages_inbound_once ON messages(inbox_id, smtp_message_id)
    WHERE direction = 'inbound' AND smtp_message_id IS NOT NULL;

CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, text_body, sender, content='messages', content_rowid='seq'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, subject, text_body, sender)
    VALUES (new.seq, new.subject, new.text_body, new.sender);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, subject, text_body, sender)
    VALUES ('delete', old.seq, old.subject, old.text_body, old.sender);
END;

CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    message_id TEXT,
    inbox_id TEXT,
    filename TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'upload',
    created_at TEXT NOT NULL
);
CREATE INDEX attachments_org ON attachments(org_id, created_at);
CREATE INDEX attachments_message ON attachments(message_id);
CREATE INDEX attachments_sha ON attachments(sha256);

CREATE TABLE outbound_queue (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX outbound_due ON outbound_queue(status, next_attempt_at);
CREATE INDEX outbound_message ON outbound_queue(message_id);

CREATE TABLE delivery_events (
    id TEXT PRIMARY KEY,
    seq INTEGER,
    org_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    inbox_id TEXT,
    domain_id TEXT,
    recipient TEXT NOT NULL DEFAULT '',
    event_type TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX delivery_events_org ON delivery_events(org_id, created_at, id);
CREATE INDEX delivery_events_message ON delivery_events(message_id, created_at);
CREATE INDEX delivery_events_inbox ON delivery_events(inbox_id, created_at);
CREATE INDEX delivery_events_domain ON delivery_events(domain_id, created_at);

CREATE TABLE suppressions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    email TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'manual',
    inbox_id TEXT,
    domain_id TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX suppressions_org ON suppressions(org_id, created_at, id);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    message_id TEXT,
    endpoint TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    http_status INTEGER,
    last_error TEXT,
    latency_ms REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_org ON webhook_deliveries(org_id, created_at, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_inbox ON webhook_deliveries(inbox_id, created_at);

CREATE TABLE audit_logs (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    key_id TEXT,
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX audit_logs_org ON audit_logs(org_id, created_at, id);

CREATE TABLE deletion_requests (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    preview TEXT NOT NULL DEFAULT '{}',
    deleted_counts TEXT,
    confirm_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    confirmed_at TEXT,
    completed_at TEXT
);
CREATE INDEX deletion_requests_org ON deletion_requests(org_id, status);

CREATE TABLE idempotency_keys (
    org_id TEXT NOT NULL,
    key TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (org_id, key)
);
"""

WEBHOOK_ATTEMPTS = """
ALTER TABLE webhook_deliveries ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]';
ALTER TABLE webhook_deliveries ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;
CREATE INDEX webhook_deliveries_org_status ON webhook_deliveries(org_id, status, created_at, id);
CREATE INDEX webhook_deliveries_inbox_order ON webhook_deliveries(inbox_id, created_at, id);
"""

MAIL_ORG_DOMAIN_ORDER = """
CREATE INDEX threads_org_domain_order ON threads(org_id, domain_id, last_message_at, id);
CREATE INDEX messages_org_domain ON messages(org_id, domain_id, created_at, seq);
"""

DELIVERY_LISTS = """
ALTER TABLE suppressions ADD COLUMN detail TEXT NOT NULL DEFAULT '';
CREATE INDEX suppressions_org_inbox ON suppressions(org_id, inbox_id, created_at, id);
CREATE INDEX suppressions_org_domain ON suppressions(org_id, domain_id, created_at, id);
CREATE INDEX delivery_events_org_type ON delivery_events(org_id, event_type, created_at, id);
CREATE INDEX delivery_events_message_order ON delivery_events(message_id, created_at, id);
CREATE INDEX delivery_events_inbox_order ON delivery_events(inbox_id, created_at, id);
CREATE INDEX delivery_events_domain_order ON delivery_events(domain_id, created_at, id);
"""

DELETION_LOOKUPS = """
CREATE INDEX messages_raw_sha ON messages(raw_sha256);
CREATE INDEX audit_logs_org_action ON audit_logs(org_id, action, created_at, id);
"""

WEBHOOK_CURSORS = """
CREATE TABLE webhook_cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

# A domain name may exist in several organisations while unverified, so `domains.name` and
# `inboxes.address` stop being unique; at most one row per name is verified. SQLite cannot drop a UNIQUE
# constraint in place, so both tables are rebuilt (create, copy, drop, rename) with their indexes.
# Every other domain gets an ownership TXT record with a random token; a row verified before this
# migration already proved control of the name with its own DKIM key, so its record starts verified.
DOMAIN_OWNERSHIP = """
CREATE TABLE domains_by_org (
    id TEXT PRIMARY KEY,
    org_id TEXT,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'not_started',
    region TEXT NOT NULL DEFAULT 'us-east-1',
    records TEXT NOT NULL DEFAULT '[]',
    dkim_selector TEXT NOT NULL DEFAULT 'commune',
    dkim_private_key TEXT,
    shared INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    verified_at TEXT,
    UNIQUE (org_id, name)
);
INSERT INTO domains_by_org (id, org_id, name, status, region, records, dkim_selector, dkim_private_key, shared,
                            created_at, verified_at)
    SELECT id, org_id, name, status, region, records, dkim_selector, dkim_private_key, shared, created_at,
           verified_at FROM domains;
DROP TABLE domains;
ALTER TABLE domains_by_org RENAME TO domains;
CREATE INDEX domains_org ON domains(org_id, created_at);
CREATE INDEX domains_name ON domains(name, status);
CREATE UNIQUE INDEX domains_one_verified ON domains(name) WHERE status = 'verified';
UPDATE domains SET records = json_insert(records, '$[#]', json_object(
    'record', 'Ownership', 'name', '_commune-verify.' || name, 'type', 'TXT',
    'value', 'commune-verification=' || lower(hex(randomblob(16))),
    'status', CASE WHEN status = 'verified' THEN 'verified' ELSE 'pending' END, 'ttl', 'Auto'))
    WHERE shared = 0;

CREATE TABLE inboxes_by_domain (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES domains(id),
    local_part TEXT NOT NULL,
    address TEXT NOT NULL,
    display_name TEXT,
    status TEXT,
    webhook_endpoint TEXT,
    webhook_events TEXT,
    webhook_secret TEXT,
    extraction_schema TEXT,
    retention_days INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (domain_id, local_part)
);
INSERT INTO inboxes_by_domain (id, org_id, domain_id, local_part, address, display_name, status, webhook_endpoint,
                               webhook_events, webhook_secret, extraction_schema, retention_days, created_at)
    SELECT id, org_id, domain_id, local_part, address, display_name, status, webhook_endpoint, webhook_events,
           webhook_secret, extraction_schema, retention_days, created_at FROM inboxes;
DROP TABLE inboxes;
ALTER TABLE inboxes_by_domain RENAME TO inboxes;
CREATE INDEX inboxes_org ON inboxes(org_id, created_at);
CREATE INDEX inboxes_domain ON inboxes(domain_id, org_id);
CREATE INDEX inboxes_address ON inboxes(address);
"""

# A key reused for a different request is refused, so each key remembers what it was first used for.
IDEMPOTENCY_REQUEST_HASH = """
ALTER TABLE idempotency_keys ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';
"""

# Newest-first lists break ties within a millisecond by insertion order: the rowid, which SQLite keeps
# as the last column of every index, so `(…, created_at)` serves `ORDER BY created_at DESC, rowid DESC`
# and the keyset `(created_at, rowid) < (?, ?)`. The old indexes ended in a random id instead.
NEWEST_FIRST_BY_INSERTION = """
DROP INDEX audit_logs_org;
DROP INDEX audit_logs_org_action;
CREATE INDEX audit_logs_org_seq ON audit_logs(org_id, created_at);
CREATE INDEX audit_logs_org_action_seq ON audit_logs(org_id, action, created_at);
DROP INDEX delivery_events_org;
DROP INDEX delivery_events_org_type;
DROP INDEX delivery_events_message_order;
DROP INDEX delivery_events_inbox_order;
DROP INDEX delivery_events_domain_order;
CREATE INDEX delivery_events_org_seq ON delivery_events(org_id, created_at);
CREATE INDEX delivery_events_org_type_seq ON delivery_events(org_id, event_type, created_at);
DROP INDEX webhook_deliveries_org;
DROP INDEX webhook_deliveries_org_status;
DROP INDEX webhook_deliveries_inbox_order;
CREATE INDEX webhook_deliveries_org_seq ON webhook_deliveries(org_id, created_at);
CREATE INDEX webhook_deliveries_org_status_seq ON webhook_deliveries(org_id, status, created_at);
DROP INDEX suppressions_org;
DROP INDEX suppressions_org_inbox;
DROP INDEX suppressions_org_domain;
CREATE INDEX suppressions_org_seq ON suppressions(org_id, created_at);
CREATE INDEX suppressions_org_inbox_seq ON suppressions(org_id, inbox_id, created_at);
CREATE INDEX suppressions_org_domain_seq ON suppressions(org_id, domain_id, created_at);
"""

# DMARC aggregate reports: one row per report message (`pending` until the worker parses it, then
# `parsed`, `failed` or `duplicate`), one row per report record. Domains created before get the DMARC
# TXT record (`rua` pointing at this server) added to the records they list.
DMARC_REPORTS = """
CREATE TABLE dmarc_reports (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    reporter_org TEXT,
    reporter_email TEXT,
    report_id TEXT,
    date_begin TEXT,
    date_end TEXT,
    policy TEXT NOT NULL DEFAULT '{}',
    record_count INTEGER NOT NULL DEFAULT 0,
    message_count INTEGER NOT NULL DEFAULT 0,
    pass_count INTEGER NOT NULL DEFAULT 0,
    fail_count INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL,
    processed_at TEXT
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports(domain_id, seq);
CREATE INDEX dmarc_reports_org ON dmarc_reports(org_id, seq);
CREATE INDEX dmarc_reports_identity ON dmarc_reports(domain_id, report_id);
CREATE INDEX dmarc_reports_pending ON dmarc_reports(seq) WHERE status = 'pending';

CREATE TABLE dmarc_records (
    report_seq INTEGER NOT NULL,
    org_id TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    date_end TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    passed INTEGER NOT NULL,
    header_from TEXT NOT NULL DEFAULT '',
    envelope_from TEXT,
    envelope_to TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    auth_results TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX dmarc_records_report ON dmarc_records(report_seq);
CREATE INDEX dmarc_records_domain ON dmarc_records(domain_id, date_end);
CREATE INDEX dmarc_records_org ON dmarc_records(org_id);

UPDATE domains SET records = json_insert(records, '$[#]', json_object(
    'record', 'DMARC', 'name', '_dmarc.' || name, 'type', 'TXT',
    'value', 'v=DMARC1; p=none; rua=mailto:dmarc-reports@' || name, 'status', 'pending', 'ttl', 'Auto'))
    WHERE shared = 0 AND NOT EXISTS (
        SELECT 1 FROM json_each(domains.records) WHERE json_extract(value, '$.record') = 'DMARC');
"""

# Who took part in each thread (every sender, to, cc and bcc address of its messages), kept by triggers
# so ingest code stays as it is: it gives threads their `participant_count` without aggregating at read
# time, and finds an address's mail through an index (a data-subject erasure) instead of scanning JSON.
# Existing mail is indexed once, before the counting triggers exist.
THREAD_PARTICIPANTS = """
ALTER TABLE threads ADD COLUMN participant_count INTEGER NOT NULL DEFAULT 0;
CREATE TABLE thread_participants (
    thread_id TEXT NOT NULL,
    address TEXT NOT NULL,
    org_id TEXT NOT NULL,
    PRIMARY KEY (thread_id, address)
) WITHOUT ROWID;
INSERT OR IGNORE INTO thread_participants (thread_id, address, org_id)
    SELECT m.thread_id, json_extract(j.value, '$.identity'), m.org_id FROM messages m, json_each(m.participants) j
    WHERE coalesce(json_extract(j.value, '$.identity'), '') != '';
CREATE INDEX thread_participants_address ON thread_participants(org_id, address);
UPDATE threads SET participant_count = (SELECT COUNT(*) FROM thread_participants WHERE thread_id = threads.id);
CREATE TRIGGER messages_participants AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO thread_participants (thread_id, address, org_id)
    SELECT new.thread_id, json_extract(value, '$.identity'), new.org_id FROM json_each(new.participants)
    WHERE coalesce(json_extract(value, '$.identity'), '') != '';
END;
CREATE TRIGGER thread_participants_added AFTER INSERT ON thread_participants BEGIN
    UPDATE threads SET participant_count = participant_count + 1 WHERE id = new.thread_id;
END;
CREATE TRIGGER thread_participants_removed AFTER DELETE ON thread_participants BEGIN
    UPDATE threads SET participant_count = participant_count - 1 WHERE id = old.thread_id;
END;
CREATE TRIGGER threads_participants_counted AFTER INSERT ON threads BEGIN
    UPDATE threads SET participant_count = (SELECT COUNT(*) FROM thread_participants WHERE thread_id = new.id)
    WHERE id = new.id;
END;
CREATE TRIGGER threads_participants_gone AFTER DELETE ON threads BEGIN
    DELETE FROM thread_participants WHERE thread_id = old.id;
END;
CREATE INDEX webhook_deliveries_message ON webhook_deliveries(message_id);
"""

# Inbound authentication results, message labels (`quarantine` for now; a labels feature extends the
# same column) and the inbox setting that acts on DMARC failures. The thread list indexes are rebuilt
# with `quarantined` after the equality columns, so the default lists skip quarantined threads by index.
# The partial indexes hold only the few quarantined / failed rows; their WHERE clauses are the
# conditions `store.mail_reads` queries with (QUARANTINED, AUTH_FAILED), written identically.
MAIL_AUTHENTICATION = """
ALTER TABLE messages ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN authentication TEXT;
ALTER TABLE threads ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inboxes ADD COLUMN reject_unauthenticated TEXT NOT NULL DEFAULT 'none';
DROP INDEX threads_inbox_order;
CREATE INDEX threads_inbox_order ON threads(inbox_id, quarantined, last_message_at, id);
DROP INDEX threads_org_domain_order;
CREATE INDEX threads_org_domain_order ON threads(org_id, domain_id, quarantined, last_message_at, id);
CREATE INDEX messages_quarantined_inbox ON messages(inbox_id, created_at, seq)
    WHERE instr(labels, '"quarantine"') > 0;
CREATE INDEX messages_quarantined_domain ON messages(org_id, domain_id, created_at, seq)
    WHERE instr(labels, '"quarantine"') > 0;
CREATE INDEX messages_auth_failed ON messages(org_id, seq) WHERE instr(authentication, '"fail"') > 0;
"""

# Codes and links of a message (JSON), filled the first time the message is read (store/extracted.py).
MESSAGE_EXTRACTED = """
ALTER TABLE messages ADD COLUMN extracted TEXT;
"""

# Mail state shared by every client: labels on messages (`unread`, `flagged`, `archived`, `trash`, `sent`,
# `received`, `quarantine` and users' own), each thread labelled with the union of its messages' labels.
# `messages.labels` (JSON) stays the message's own list; triggers keep `message_labels` (one row per message
# and label) and `thread_labels` (per thread and label: how many of its messages carry it, with copies of
# the thread's list keys so a label's threads are one index range, newest first) and the thread's `labels`,
# `unread_count` and `hidden` in line. `threads.quarantined` becomes `hidden`, a bit set: 1 = every message
# is quarantined (as before), 2 = in the trash; the default lists read `hidden = 0` from their index.
# Mail stored before is labelled `received` (counted read) or `sent`. Beside the word index, a trigram
# index (subjects, bodies, senders, attachment file names) finds substrings, also in Chinese, Japanese and
# Korean text. `contacts` holds every address the organisation exchanged mail with, for completion.
MAIL_STATE_TABLES = """
ALTER TABLE threads RENAME COLUMN quarantined TO hidden;
ALTER TABLE threads ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN sent_at TEXT;
ALTER TABLE messages ADD COLUMN filenames TEXT NOT NULL DEFAULT '';
ALTER TABLE inboxes ADD COLUMN trash_days INTEGER NOT NULL DEFAULT 30;
UPDATE messages SET labels = json_insert(labels, '$[#]',
    CASE direction WHEN 'inbound' THEN 'received' ELSE 'sent' END);
UPDATE messages SET filenames = coalesce((SELECT group_concat(a.filename, ' ') FROM json_each(messages.attachment_ids) j
    JOIN attachments a ON a.id = j.value), '') WHERE attachment_ids != '[]';

CREATE TABLE message_labels (
    message_id TEXT NOT NULL,
    label TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    PRIMARY KEY (message_id, label)
) WITHOUT ROWID;
CREATE TABLE thread_labels (
    thread_id TEXT NOT NULL,
    label TEXT NOT NULL,
    messages INTEGER NOT NULL,
    org_id TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    hidden INTEGER NOT NULL,
    last_message_at TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (thread_id, label)
) WITHOUT ROWID;
CREATE INDEX thread_labels_inbox ON thread_labels(inbox_id, label, hidden, last_message_at, thread_id);
CREATE INDEX thread_labels_domain ON thread_labels(org_id, domain_id, label, hidden, last_message_at, thread_id);
CREATE VIRTUAL TABLE messages_trigram USING fts5(
    subject, text_body, sender, filenames, content='messages', content_rowid='seq', tokenize='trigram'
);
CREATE TABLE contacts (
    org_id TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    last_at TEXT NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (org_id, address)
) WITHOUT ROWID;
CREATE INDEX contacts_recent ON contacts(org_id, last_at);
"""

# Fills the label tables, the threads' label fields, the trigram index and the contacts from the messages
# present (run with the MAIL_STATE_TRIGGERS absent: by the migration, and by the benchmarks' bulk seeding).
MAIL_STATE_FILL = """
INSERT OR IGNORE INTO message_labels (message_id, label, thread_id)
    SELECT m.id, j.value, m.thread_id FROM messages m, json_each(m.labels) j;
INSERT INTO thread_labels (thread_id, label, messages, org_id, inbox_id, domain_id, hidden, last_message_at,
                           added_at)
    SELECT ml.thread_id, ml.label, COUNT(*), t.org_id, t.inbox_id, t.domain_id, t.hidden, t.last_message_at,
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM message_labels ml JOIN threads t ON t.id = ml.thread_id GROUP BY ml.thread_id, ml.label;
UPDATE threads SET
    labels = coalesce((SELECT json_group_array(label) FROM (
        SELECT label FROM thread_labels WHERE thread_id = threads.id ORDER BY label)), '[]'),
    unread_count = coalesce((SELECT messages FROM thread_labels WHERE thread_id = threads.id AND label = 'unread'), 0),
    hidden = hidden | CASE WHEN EXISTS (SELECT 1 FROM thread_labels WHERE thread_id = threads.id AND label = 'trash')
                      THEN 2 ELSE 0 END;
UPDATE thread_labels SET hidden = (SELECT hidden FROM threads WHERE id = thread_labels.thread_id);
INSERT INTO messages_trigram(messages_trigram) VALUES ('rebuild');
INSERT INTO contacts (org_id, address, name, last_at, messages)
    SELECT org_id, address, max(name), max(created_at), COUNT(*) FROM (
        SELECT org_id, sender AS address, json_extract(extra, '$.sender_name') AS name, created_at
        FROM messages WHERE direction = 'inbound'
        UNION ALL
        SELECT m.org_id, json_extract(j.value, '$.identity'), NULL, m.created_at
        FROM messages m, json_each(m.participants) j
        WHERE m.direction = 'outbound' AND json_extract(j.value, '$.role') != 'sender')
    WHERE coalesce(address, '') != '' GROUP BY org_id, address;
"""

MAIL_STATE_TRIGGERS = """
CREATE TRIGGER messages_labels_added AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO message_labels (message_id, label, thread_id)
    SELECT new.id, value, new.thread_id FROM json_each(new.labels);
END;
CREATE TRIGGER messages_labels_changed AFTER UPDATE OF labels ON messages BEGIN
    DELETE FROM message_labels WHERE message_id = new.id
        AND label NOT IN (SELECT value FROM json_each(new.labels));
    INSERT OR IGNORE INTO message_labels (message_id, label, thread_id)
    SELECT new.id, value, new.thread_id FROM json_each(new.labels);
END;
CREATE TRIGGER messages_labels_gone AFTER DELETE ON messages BEGIN
    DELETE FROM message_labels WHERE message_id = old.id;
END;
CREATE TRIGGER message_labels_added AFTER INSERT ON message_labels BEGIN
    INSERT INTO thread_labels (thread_id, label, messages, org_id, inbox_id, domain_id, hidden, last_message_at,
                               added_at)
    SELECT id, new.label, 1, org_id, inbox_id, domain_id, hidden, last_message_at,
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM threads WHERE id = new.thread_id
    ON CONFLICT (thread_id, label) DO UPDATE SET messages = messages + 1;
END;
CREATE TRIGGER message_labels_removed AFTER DELETE ON message_labels BEGIN
    UPDATE thread_labels SET messages = messages - 1 WHERE thread_id = old.thread_id AND label = old.label;
    DELETE FROM thread_labels WHERE thread_id = old.thread_id AND label = old.label AND messages <= 0;
END;
CREATE TRIGGER thread_labels_added AFTER INSERT ON thread_labels BEGIN
    UPDATE threads SET
        labels = (SELECT json_group_array(label) FROM (
            SELECT label FROM thread_labels WHERE thread_id = new.thread_id ORDER BY label)),
        hidden = CASE WHEN new.label = 'trash' THEN hidden | 2 ELSE hidden END,
        unread_count = CASE WHEN new.label = 'unread' THEN new.messages ELSE unread_count END
    WHERE id = new.thread_id;
END;
CREATE TRIGGER thread_labels_counted AFTER UPDATE OF messages ON thread_labels WHEN new.label = 'unread' BEGIN
    UPDATE threads SET unread_count = new.messages WHERE id = new.thread_id;
END;
CREATE TRIGGER thread_labels_removed AFTER DELETE ON thread_labels BEGIN
    UPDATE threads SET
        labels = coalesce((SELECT json_group_array(label) FROM (
            SELECT label FROM thread_labels WHERE thread_id = old.thread_id ORDER BY label)), '[]'),
        hidden = CASE WHEN old.label = 'trash' THEN hidden & ~2 ELSE hidden END,
        unread_count = CASE WHEN old.label = 'unread' THEN 0 ELSE unread_count END
    WHERE id = old.thread_id;
END;
CREATE TRIGGER threads_label_keys AFTER UPDATE OF hidden, last_message_at ON threads BEGIN
    UPDATE thread_labels SET hidden = new.hidden, last_message_at = new.last_message_at
    WHERE thread_id = new.id AND (hidden != new.hidden OR last_message_at != new.last_message_at);
END;
CREATE TRIGGER threads_labels_gone AFTER DELETE ON threads BEGIN
    DELETE FROM thread_labels WHERE thread_id = old.id;
END;

CREATE TRIGGER messages_trigram_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_trigram(rowid, subject, text_body, sender, filenames)
    VALUES (new.seq, new.subject, new.text_body, new.sender, new.filenames);
END;
CREATE TRIGGER messages_trigram_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_trigram(messages_trigram, rowid, subject, text_body, sender, filenames)
    VALUES ('delete', old.seq, old.subject, old.text_body, old.sender, old.filenames);
END;
CREATE TRIGGER messages_trigram_update AFTER UPDATE OF subject, text_body, sender, filenames ON messages
BEGIN
    INSERT INTO messages_trigram(messages_trigram, rowid, subject, text_body, sender, filenames)
    VALUES ('delete', old.seq, old.subject, old.text_body, old.sender, old.filenames);
    INSERT INTO messages_trigram(rowid, subject, text_body, sender, filenames)
    VALUES (new.seq, new.subject, new.text_body, new.sender, new.filenames);
END;

CREATE TRIGGER messages_contacts AFTER INSERT ON messages BEGIN
    INSERT INTO contacts (org_id, address, name, last_at, messages)
    SELECT new.org_id, address, name, new.created_at, 1 FROM (
        SELECT new.sender AS address, json_extract(new.extra, '$.sender_name') AS name
        WHERE new.direction = 'inbound'
        UNION ALL
        SELECT json_extract(value, '$.identity'), NULL FROM json_each(new.participants)
        WHERE new.direction = 'outbound' AND json_extract(value, '$.role') != 'sender')
    WHERE coalesce(address, '') != ''
    ON CONFLICT (org_id, address) DO UPDATE SET last_at = max(last_at, excluded.last_at),
        name = coalesce(excluded.name, name), messages = messages + 1;
END;
"""

MAIL_STATE = MAIL_STATE_TABLES + MAIL_STATE_FILL + MAIL_STATE_TRIGGERS


# The outbox (issue 15): drafts, scheduled sends and approval holds. A held or scheduled message is an
# ordinary sender's-copy message row (status in `delivery_status`, shown in its thread) plus one `outbox`
# row carrying what the release needs; a draft is an `outbox` row alone. `due_at` is when the worker
# must next look at a row (its `send_at`, or when a pending approval expires): the partial index holds
# only the rows the worker may still act on. Inboxes gain the approval setting, API keys `hold_sends`.
OUTBOX = """
ALTER TABLE api_keys ADD COLUMN hold_sends INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inboxes ADD COLUMN approval TEXT NOT NULL DEFAULT 'none';
ALTER TABLE inboxes ADD COLUMN approval_timeout_hours INTEGER NOT NULL DEFAULT 72;
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    status TEXT NOT NULL,
    submitted_by TEXT,
    decided_by TEXT,
    payload TEXT NOT NULL DEFAULT '{}',
    validation TEXT,
    send_at TEXT,
    due_at REAL,
    expires_at TEXT,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX outbox_org_status ON outbox(org_id, status, created_at);
CREATE INDEX outbox_inbox_status ON outbox(inbox_id, status, created_at);
CREATE INDEX outbox_due ON outbox(due_at) WHERE status IN ('scheduled', 'approved', 'pending_approval');
"""

# The inbox `counts` count an inbox's visible threads (`hidden = 0`): this narrow index holds just those
# keys, so the count walks a third of the pages the thread list index would.
INBOX_COUNTS = """
CREATE INDEX threads_inbox_hidden ON threads(inbox_id, hidden);
"""

# A thread summary names its last sender by display name as well as address (the `From:` name of the
# newest message), so a client's list shows "Zoë Müller" without fetching the messages.
THREAD_SENDER_NAME = """
ALTER TABLE threads ADD COLUMN last_sender_name TEXT;
UPDATE threads SET last_sender_name = (
    SELECT json_extract(m.extra, '$.sender_name') FROM messages m WHERE m.thread_id = threads.id
    ORDER BY m.created_at DESC, m.seq DESC LIMIT 1);
"""

# Inbox counts as counters, kept by triggers on `threads` and `thread_labels`, so an inbox's `counts` are
# one primary-key read at any size rather than index range counts that grow with the inbox (replacing the
# narrow index INBOX_COUNTS added for those). `threads` counts the threads the default list shows
# (`hidden = 0`), `unread` and `flagged` those of them carrying the label, `trash` the threads in the trash.
INBOX_COUNTERS_TABLE = """
DROP INDEX threads_inbox_hidden;
CREATE TABLE inbox_counts (
    inbox_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (inbox_id, name)
) WITHOUT ROWID;
"""

INBOX_COUNTERS_FILL = """
INSERT INTO inbox_counts (inbox_id, name, value)
    SELECT inbox_id, 'threads', COUNT(*) FROM threads WHERE hidden = 0 GROUP BY inbox_id
    UNION ALL
    SELECT inbox_id, label, COUNT(*) FROM thread_labels WHERE label IN ('unread', 'flagged') AND hidden = 0
    GROUP BY inbox_id, label
    UNION ALL
    SELECT inbox_id, label, COUNT(*) FROM thread_labels WHERE label = 'trash' GROUP BY inbox_id, label;
"""

INBOX_COUNTERS_TRIGGERS = """
CREATE TRIGGER threads_counted AFTER INSERT ON threads WHEN new.hidden = 0 BEGIN
    INSERT INTO inbox_counts (inbox_id, name, value) VALUES (new.inbox_id, 'threads', 1)
    ON CONFLICT (inbox_id, name) DO UPDATE SET value = value + 1;
END;
CREATE TRIGGER threads_uncounted AFTER DELETE ON threads WHEN old.hidden = 0 BEGIN
    UPDATE inbox_counts SET value = value - 1 WHERE inbox_id = old.inbox_id AND name = 'threads';
END;
CREATE TRIGGER threads_recounted AFTER UPDATE OF hidden ON threads WHEN (old.hidden = 0) != (new.hidden = 0) BEGIN
    INSERT INTO inbox_counts (inbox_id, name, value)
    VALUES (new.inbox_id, 'threads', CASE WHEN new.hidden = 0 THEN 1 ELSE -1 END)
    ON CONFLICT (inbox_id, name) DO UPDATE SET value = value + excluded.value;
END;
CREATE TRIGGER thread_labels_counted_in AFTER INSERT ON thread_labels
WHEN new.label = 'trash' OR (new.label IN ('unread', 'flagged') AND new.hidden = 0) BEGIN
    INSERT INTO inbox_counts (inbox_id, name, value) VALUES (new.inbox_id, new.label, 1)
    ON CONFLICT (inbox_id, name) DO UPDATE SET value = value + 1;
END;
CREATE TRIGGER thread_labels_counted_out AFTER DELETE ON thread_labels
WHEN old.label = 'trash' OR (old.label IN ('unread', 'flagged') AND old.hidden = 0) BEGIN
    UPDATE inbox_counts SET value = value - 1 WHERE inbox_id = old.inbox_id AND name = old.label;
END;
CREATE TRIGGER thread_labels_recounted AFTER UPDATE OF hidden ON thread_labels
WHEN new.label IN ('unread', 'flagged') AND (old.hidden = 0) != (new.hidden = 0) BEGIN
    INSERT INTO inbox_counts (inbox_id, name, value)
    VALUES (new.inbox_id, new.label, CASE WHEN new.hidden = 0 THEN 1 ELSE -1 END)
    ON CONFLICT (inbox_id, name) DO UPDATE SET value = value + excluded.value;
END;
CREATE TRIGGER inboxes_counts_gone AFTER DELETE ON inboxes BEGIN
    DELETE FROM inbox_counts WHERE inbox_id = old.id;
END;
"""

INBOX_COUNTERS = INBOX_COUNTERS_TABLE + INBOX_COUNTERS_FILL + INBOX_COUNTERS_TRIGGERS

# Scheduled messages are listed soonest first: by `send_at` (UTC ISO text, so text order is time order).
OUTBOX_SEND_ORDER = """
CREATE INDEX outbox_org_send_at ON outbox(org_id, status, send_at);
CREATE INDEX outbox_inbox_send_at ON outbox(inbox_id, status, send_at);
"""

# Pairs of adjacent Chinese, Japanese and Korean characters per message (store/bigrams.py): words in
# these scripts are often two characters, below what the trigram index finds. The mail store writes them;
# `bigram_backlog` marks the messages stored before (below that seq), indexed once at start.
CJK_BIGRAMS = """
CREATE TABLE message_bigrams (
    bigram TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (bigram, seq)
) WITHOUT ROWID;
CREATE INDEX message_bigrams_seq ON message_bigrams(seq);
CREATE TABLE bigram_backlog (below INTEGER NOT NULL);
INSERT INTO bigram_backlog (below) SELECT max(seq) + 1 FROM messages HAVING count(*) > 0;
CREATE TRIGGER messages_bigrams_gone AFTER DELETE ON messages BEGIN
    DELETE FROM message_bigrams WHERE seq = old.seq;
END;
"""

# Several nodes on one database (issue 17): a worker claims a due row by writing its node id and the end
# of its lease in one statement; a row whose lease ran out (its node died) is free for any node again.
# `leases` holds the named ones (the retention sweep), `rate_limits` the token buckets every node shares,
# `server_state` what is created once per database (the server secret, the admin key), `event_payloads`
# the events too large for a notification (PostgreSQL's relay). SQLite installs use only `leases`.
COORDINATION = """
ALTER TABLE outbound_queue ADD COLUMN lease_owner TEXT;
ALTER TABLE outbound_queue ADD COLUMN lease_until REAL;
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN lease_until REAL;
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until REAL;
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE rate_limits (
    bucket TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL,
    allowed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE server_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE event_payloads (
    id INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX event_payloads_created ON event_payloads(created_at);
"""

# The search indexes merge their segments once eight of a size pile up instead of four (FTS5's default):
# most of an index's cost at ingest is re-merging what was just written, and this cuts the group commit's
# CPU per message by about a tenth, while a search reads at most twice as many small segments. SQLite only
# (PostgreSQL's indexes have no such setting); the rows each search finds are the same.
SEARCH_INDEX_MERGING = """
INSERT INTO messages_trigram(messages_trigram, rank) VALUES ('automerge', 8);
INSERT INTO messages_fts(messages_fts, rank) VALUES ('automerge', 8);
"""

MIGRATIONS: list[str] = [INITIAL, WEBHOOK_ATTEMPTS, MAIL_ORG_DOMAIN_ORDER, DELIVERY_LISTS, DELETION_LOOKUPS,
                         WEBHOOK_CURSORS, DOMAIN_OWNERSHIP, IDEMPOTENCY_REQUEST_HASH, NEWEST_FIRST_BY_INSERTION,
                         DMARC_REPORTS, THREAD_PARTICIPANTS, MAIL_AUTHENTICATION, MESSAGE_EXTRACTED,
                         MAIL_STATE, OUTBOX, INBOX_COUNTS, THREAD_SENDER_NAME, INBOX_COUNTERS, OUTBOX_SEND_ORDER,
                         CJK_BIGRAMS, COORDINATION, SEARCH_INDEX_MERGING]


def migrate(conn: sqlite3.Connection) -> int:
    """Run every migration not yet applied, each in its own transaction. Returns the new version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """Split a script into complete statements (triggers contain semicolons)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
