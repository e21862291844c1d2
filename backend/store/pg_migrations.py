"""The PostgreSQL schema: ordered migrations recorded in `schema_migrations`, run under an advisory lock.

The tables, columns and indexes equal SQLite's after all of backend/store/migrations.py (a test compares
the column sets); SQLite's triggers are PL/pgSQL functions here. Tables whose keyset paging reads
SQLite's implicit `rowid` get an explicit `rowid` identity column, and `seq INTEGER PRIMARY KEY` is an
identity column. Compatibility functions (`instr`, `json_each`, `json_extract`, two-argument `max`, …)
let the store's SQL be written once for both engines. Column types keep Python's values equal on both:
TEXT -> text COLLATE "C" (byte order, as SQLite compares, whatever the database's locale), INTEGER ->
bigint, REAL -> double precision.

Append new migrations to the end of PG_MIGRATIONS (with a distinct name); never edit one that has shipped.
A SQLite migration that adds tables or columns needs its twin here.
"""

from __future__ import annotations

MIGRATION_LOCK = 0x636F6D6D756E65  # "commune": pg_advisory_lock key held while migrating

# Functions that give PostgreSQL the SQLite built-ins the store's SQL uses. `commune_fold` is Unicode
# case folding for search (the database's own folding, so both sides of a comparison fold alike).
# Bodies name our own functions with `@schema@.` (the schema migrated into): index builds run them with
# only pg_catalog on the search path.
COMPAT_FUNCTIONS = r"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE FUNCTION instr(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT strpos(haystack, needle)';
CREATE FUNCTION max(a text, b text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT greatest(a, b)';
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT greatest(a, b)';
CREATE FUNCTION max(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT greatest(a, b)';
CREATE FUNCTION min(a text, b text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT least(a, b)';
CREATE FUNCTION min(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT least(a, b)';
CREATE FUNCTION min(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT least(a, b)';
CREATE FUNCTION json_scalar_text(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' WHEN 'null' THEN NULL ELSE v::text END$$;
CREATE FUNCTION json_extract(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$SELECT @schema@.json_scalar_text(doc::jsonb #> string_to_array(substr(path, 3), '.'))$$;
CREATE FUNCTION json_each(doc text) RETURNS TABLE (key text, value text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (e.n - 1)::text, @schema@.json_scalar_text(e.v)
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc::jsonb) = 'array' THEN doc::jsonb END)
             WITH ORDINALITY AS e(v, n)
    UNION ALL
    SELECT o.k, @schema@.json_scalar_text(o.v)
        FROM jsonb_each(CASE WHEN jsonb_typeof(doc::jsonb) = 'object' THEN doc::jsonb END) AS o(k, v)
$$;
CREATE FUNCTION json_tree(doc text) RETURNS TABLE (key text, value text, type text, path text, fullkey text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH RECURSIVE node(k, v, path, fullkey) AS (
        SELECT NULL::text, doc::jsonb, '$'::text, '$'::text
        UNION ALL
        SELECT c.k, c.v, node.fullkey, node.fullkey || c.suffix FROM node, LATERAL (
            SELECT e.k, e.v, '.' || e.k AS suffix
                FROM jsonb_each(CASE WHEN jsonb_typeof(node.v) = 'object' THEN node.v END) AS e(k, v)
            UNION ALL
            SELECT (a.n - 1)::text, a.v, '[' || (a.n - 1) || ']'
                FROM jsonb_array_elements(CASE WHEN jsonb_typeof(node.v) = 'array' THEN node.v END)
                WITH ORDINALITY AS a(v, n)) AS c
    )
    SELECT k, @schema@.json_scalar_text(v),
           CASE jsonb_typeof(v) WHEN 'string' THEN 'text' WHEN 'boolean' THEN v::text
                WHEN 'number' THEN CASE WHEN v::text ~ '^-?[0-9]+$' THEN 'integer' ELSE 'real' END
                ELSE jsonb_typeof(v) END,
           path, fullkey
    FROM node
$$;
CREATE FUNCTION json_valid(doc text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM doc::jsonb;
    RETURN doc IS NOT NULL;
EXCEPTION WHEN others THEN
    RETURN false;
END $$;
CREATE FUNCTION commune_now() RETURNS text LANGUAGE sql STABLE AS
    $$SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')$$;
CREATE FUNCTION json_text_array(items text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$SELECT '[' || coalesce((SELECT string_agg(to_json(i)::text, ',') FROM unnest(items) AS i), '') || ']'$$;
DO $$
BEGIN
    -- Full Unicode case folding where the server has it (PostgreSQL 18), else lower case in a
    -- Unicode-aware collation, else the database's own lower().
    IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'casefold' AND pronamespace = 'pg_catalog'::regnamespace)
       AND EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'pg_unicode_fast') THEN
        EXECUTE 'CREATE FUNCTION commune_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE'
                ' AS ''SELECT pg_catalog.casefold(t COLLATE pg_unicode_fast)''';
    ELSIF EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'pg_c_utf8') THEN
        EXECUTE 'CREATE FUNCTION commune_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE'
                ' AS ''SELECT lower(t COLLATE pg_c_utf8)''';
    ELSIF EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') THEN
        EXECUTE 'CREATE FUNCTION commune_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE'
                ' AS ''SELECT lower(t COLLATE "und-x-icu")''';
    ELSE
        EXECUTE 'CREATE FUNCTION commune_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE'
                ' AS ''SELECT lower(t)''';
    END IF;
END $$;
CREATE FUNCTION casefold(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT @schema@.commune_fold(t)';
CREATE FUNCTION commune_search_text(subject text, body text, sender text, filenames text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$SELECT @schema@.commune_fold(subject || chr(31) || body || chr(31) || sender || chr(31) || filenames)$$;
CREATE FUNCTION commune_words(subject text, body text, sender text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$SELECT to_tsvector('simple'::regconfig, subject || ' ' || body || ' ' || sender)$$;
"""

TABLES = """
CREATE TABLE orgs (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE,
    tier text COLLATE "C" NOT NULL DEFAULT 'self-hosted',
    status text COLLATE "C" NOT NULL DEFAULT 'active',
    created_at text COLLATE "C" NOT NULL
);
CREATE TABLE api_keys (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL REFERENCES orgs(id),
    name text COLLATE "C" NOT NULL DEFAULT '',
    key_hash text COLLATE "C" NOT NULL UNIQUE,
    prefix text COLLATE "C" NOT NULL,
    scopes text COLLATE "C" NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    last_used_at text COLLATE "C",
    revoked_at text COLLATE "C",
    hold_sends bigint NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_org ON api_keys(org_id, created_at, rowid);

CREATE TABLE domains (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C",
    name text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL DEFAULT 'not_started',
    region text COLLATE "C" NOT NULL DEFAULT 'us-east-1',
    records text COLLATE "C" NOT NULL DEFAULT '[]',
    dkim_selector text COLLATE "C" NOT NULL DEFAULT 'commune',
    dkim_private_key text COLLATE "C",
    shared bigint NOT NULL DEFAULT 0,
    created_at text COLLATE "C" NOT NULL,
    verified_at text COLLATE "C",
    UNIQUE (org_id, name)
);
CREATE INDEX domains_org ON domains(org_id, created_at, rowid);
CREATE INDEX domains_name ON domains(name, status);
CREATE UNIQUE INDEX domains_one_verified ON domains(name) WHERE status = 'verified';

CREATE TABLE inboxes (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    domain_id text COLLATE "C" NOT NULL REFERENCES domains(id),
    local_part text COLLATE "C" NOT NULL,
    address text COLLATE "C" NOT NULL,
    display_name text COLLATE "C",
    status text COLLATE "C",
    webhook_endpoint text COLLATE "C",
    webhook_events text COLLATE "C",
    webhook_secret text COLLATE "C",
    extraction_schema text COLLATE "C",
    retention_days bigint,
    created_at text COLLATE "C" NOT NULL,
    reject_unauthenticated text COLLATE "C" NOT NULL DEFAULT 'none',
    trash_days bigint NOT NULL DEFAULT 30,
    approval text COLLATE "C" NOT NULL DEFAULT 'none',
    approval_timeout_hours bigint NOT NULL DEFAULT 72,
    UNIQUE (domain_id, local_part)
);
CREATE INDEX inboxes_org ON inboxes(org_id, created_at, rowid);
CREATE INDEX inboxes_domain ON inboxes(domain_id, org_id);
CREATE INDEX inboxes_address ON inboxes(address);

CREATE TABLE threads (
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C" NOT NULL,
    domain_id text COLLATE "C" NOT NULL,
    subject text COLLATE "C" NOT NULL DEFAULT '',
    first_message_at text COLLATE "C" NOT NULL,
    last_message_at text COLLATE "C" NOT NULL,
    message_count bigint NOT NULL DEFAULT 0,
    snippet text COLLATE "C" NOT NULL DEFAULT '',
    last_direction text COLLATE "C" NOT NULL DEFAULT 'inbound',
    last_sender text COLLATE "C" NOT NULL DEFAULT '',
    has_attachments bigint NOT NULL DEFAULT 0,
    unread_count bigint NOT NULL DEFAULT 0,
    tags text COLLATE "C" NOT NULL DEFAULT '[]',
    status text COLLATE "C" NOT NULL DEFAULT 'open',
    assigned_to text COLLATE "C",
    metadata text COLLATE "C" NOT NULL DEFAULT '{}',
    participant_count bigint NOT NULL DEFAULT 0,
    hidden bigint NOT NULL DEFAULT 0,
    labels text COLLATE "C" NOT NULL DEFAULT '[]',
    last_sender_name text COLLATE "C"
);
CREATE INDEX threads_domain_order ON threads(domain_id, last_message_at, id);
CREATE INDEX threads_inbox_order ON threads(inbox_id, hidden, last_message_at, id);
CREATE INDEX threads_org_domain_order ON threads(org_id, domain_id, hidden, last_message_at, id);

CREATE TABLE messages (
    seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    org_id text COLLATE "C" NOT NULL,
    thread_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C" NOT NULL,
    domain_id text COLLATE "C" NOT NULL,
    direction text COLLATE "C" NOT NULL,
    sender text COLLATE "C" NOT NULL DEFAULT '',
    participants text COLLATE "C" NOT NULL DEFAULT '[]',
    subject text COLLATE "C" NOT NULL DEFAULT '',
    text_body text COLLATE "C" NOT NULL DEFAULT '',
    html_body text COLLATE "C",
    smtp_message_id text COLLATE "C",
    in_reply_to text COLLATE "C",
    refs text COLLATE "C" NOT NULL DEFAULT '[]',
    attachment_ids text COLLATE "C" NOT NULL DEFAULT '[]',
    delivery_status text COLLATE "C",
    raw_sha256 text COLLATE "C",
    extra text COLLATE "C" NOT NULL DEFAULT '{}',
    created_at text COLLATE "C" NOT NULL,
    labels text COLLATE "C" NOT NULL DEFAULT '[]',
    authentication text COLLATE "C",
    extracted text COLLATE "C",
    sent_at text COLLATE "C",
    filenames text COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX messages_thread ON messages(thread_id, created_at, seq);
CREATE INDEX messages_inbox ON messages(inbox_id, created_at, seq);
CREATE INDEX messages_domain ON messages(domain_id, created_at, seq);
CREATE INDEX messages_sender ON messages(org_id, sender, created_at, seq);
CREATE INDEX messages_org ON messages(org_id, created_at, seq);
CREATE INDEX messages_smtp_id ON messages(inbox_id, smtp_message_id);
CREATE UNIQUE INDEX messages_inbound_once ON messages(inbox_id, smtp_message_id)
    WHERE direction = 'inbound' AND smtp_message_id IS NOT NULL;
CREATE INDEX messages_org_domain ON messages(org_id, domain_id, created_at, seq);
CREATE INDEX messages_raw_sha ON messages(raw_sha256);
CREATE INDEX messages_quarantined_inbox ON messages(inbox_id, created_at, seq)
    WHERE instr(labels, '"quarantine"') > 0;
CREATE INDEX messages_quarantined_domain ON messages(org_id, domain_id, created_at, seq)
    WHERE instr(labels, '"quarantine"') > 0;
CREATE INDEX messages_auth_failed ON messages(org_id, seq) WHERE instr(authentication, '"fail"') > 0;
CREATE INDEX messages_words ON messages USING gin (commune_words(subject, text_body, sender));
CREATE INDEX messages_trigram ON messages
    USING gin (commune_search_text(subject, text_body, sender, filenames) gin_trgm_ops);

CREATE TABLE attachments (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    message_id text COLLATE "C",
    inbox_id text COLLATE "C",
    filename text COLLATE "C" NOT NULL,
    mime_type text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    sha256 text COLLATE "C" NOT NULL,
    source text COLLATE "C" NOT NULL DEFAULT 'upload',
    created_at text COLLATE "C" NOT NULL
);
CREATE INDEX attachments_org ON attachments(org_id, created_at);
CREATE INDEX attachments_message ON attachments(message_id, rowid);
CREATE INDEX attachments_sha ON attachments(sha256);

CREATE TABLE outbound_queue (
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    message_id text COLLATE "C" NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL DEFAULT 'queued',
    attempts bigint NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    last_error text COLLATE "C",
    created_at text COLLATE "C" NOT NULL,
    updated_at text COLLATE "C" NOT NULL
);
CREATE INDEX outbound_due ON outbound_queue(status, next_attempt_at);
CREATE INDEX outbound_message ON outbound_queue(message_id);

CREATE TABLE delivery_events (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    seq bigint,
    org_id text COLLATE "C" NOT NULL,
    message_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C",
    domain_id text COLLATE "C",
    recipient text COLLATE "C" NOT NULL DEFAULT '',
    event_type text COLLATE "C" NOT NULL,
    detail text COLLATE "C" NOT NULL DEFAULT '',
    created_at text COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX delivery_events_rowid ON delivery_events(rowid);
CREATE INDEX delivery_events_message ON delivery_events(message_id, created_at, rowid);
CREATE INDEX delivery_events_inbox ON delivery_events(inbox_id, created_at, rowid);
CREATE INDEX delivery_events_domain ON delivery_events(domain_id, created_at, rowid);
CREATE INDEX delivery_events_org_seq ON delivery_events(org_id, created_at, rowid);
CREATE INDEX delivery_events_org_type_seq ON delivery_events(org_id, event_type, created_at, rowid);

CREATE TABLE suppressions (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    email text COLLATE "C" NOT NULL,
    reason text COLLATE "C" NOT NULL DEFAULT '',
    source text COLLATE "C" NOT NULL DEFAULT 'manual',
    inbox_id text COLLATE "C",
    domain_id text COLLATE "C",
    created_at text COLLATE "C" NOT NULL,
    detail text COLLATE "C" NOT NULL DEFAULT '',
    UNIQUE (org_id, email)
);
CREATE INDEX suppressions_org_seq ON suppressions(org_id, created_at, rowid);
CREATE INDEX suppressions_org_inbox_seq ON suppressions(org_id, inbox_id, created_at, rowid);
CREATE INDEX suppressions_org_domain_seq ON suppressions(org_id, domain_id, created_at, rowid);

CREATE TABLE webhook_deliveries (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C" NOT NULL,
    message_id text COLLATE "C",
    endpoint text COLLATE "C" NOT NULL,
    event text COLLATE "C" NOT NULL,
    payload text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL DEFAULT 'pending',
    attempts bigint NOT NULL DEFAULT 0,
    next_attempt_at double precision,
    http_status bigint,
    last_error text COLLATE "C",
    latency_ms double precision,
    created_at text COLLATE "C" NOT NULL,
    updated_at text COLLATE "C" NOT NULL,
    delivered_at text COLLATE "C",
    attempt_log text COLLATE "C" NOT NULL DEFAULT '[]',
    retry_base bigint NOT NULL DEFAULT 0
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_inbox ON webhook_deliveries(inbox_id, created_at, rowid);
CREATE INDEX webhook_deliveries_org_seq ON webhook_deliveries(org_id, created_at, rowid);
CREATE INDEX webhook_deliveries_org_status_seq ON webhook_deliveries(org_id, status, created_at, rowid);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries(message_id);

CREATE TABLE audit_logs (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    key_id text COLLATE "C",
    action text COLLATE "C" NOT NULL,
    target_type text COLLATE "C",
    target_id text COLLATE "C",
    detail text COLLATE "C" NOT NULL DEFAULT '{}',
    created_at text COLLATE "C" NOT NULL
);
CREATE INDEX audit_logs_org_seq ON audit_logs(org_id, created_at, rowid);
CREATE INDEX audit_logs_org_action_seq ON audit_logs(org_id, action, created_at, rowid);

CREATE TABLE deletion_requests (
    id text COLLATE "C" PRIMARY KEY,
    org_id text COLLATE "C" NOT NULL,
    scope text COLLATE "C" NOT NULL,
    params text COLLATE "C" NOT NULL DEFAULT '{}',
    status text COLLATE "C" NOT NULL,
    preview text COLLATE "C" NOT NULL DEFAULT '{}',
    deleted_counts text COLLATE "C",
    confirm_by text COLLATE "C" NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    confirmed_at text COLLATE "C",
    completed_at text COLLATE "C"
);
CREATE INDEX deletion_requests_org ON deletion_requests(org_id, status);

CREATE TABLE idempotency_keys (
    org_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    response text COLLATE "C" NOT NULL,
    created_at double precision NOT NULL,
    request_hash text COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (org_id, key)
);

CREATE TABLE webhook_cursors (
    name text COLLATE "C" PRIMARY KEY,
    position bigint NOT NULL
);

CREATE TABLE dmarc_reports (
    seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    org_id text COLLATE "C" NOT NULL,
    domain_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C" NOT NULL,
    message_id text COLLATE "C" NOT NULL UNIQUE,
    status text COLLATE "C" NOT NULL DEFAULT 'pending',
    error text COLLATE "C",
    reporter_org text COLLATE "C",
    reporter_email text COLLATE "C",
    report_id text COLLATE "C",
    date_begin text COLLATE "C",
    date_end text COLLATE "C",
    policy text COLLATE "C" NOT NULL DEFAULT '{}',
    record_count bigint NOT NULL DEFAULT 0,
    message_count bigint NOT NULL DEFAULT 0,
    pass_count bigint NOT NULL DEFAULT 0,
    fail_count bigint NOT NULL DEFAULT 0,
    received_at text COLLATE "C" NOT NULL,
    processed_at text COLLATE "C"
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports(domain_id, seq);
CREATE INDEX dmarc_reports_org ON dmarc_reports(org_id, seq);
CREATE INDEX dmarc_reports_identity ON dmarc_reports(domain_id, report_id);
CREATE INDEX dmarc_reports_pending ON dmarc_reports(seq) WHERE status = 'pending';

CREATE TABLE dmarc_records (
    rowid bigint GENERATED BY DEFAULT AS IDENTITY,
    report_seq bigint NOT NULL,
    org_id text COLLATE "C" NOT NULL,
    domain_id text COLLATE "C" NOT NULL,
    date_end text COLLATE "C" NOT NULL,
    source_ip text COLLATE "C" NOT NULL,
    count bigint NOT NULL,
    disposition text COLLATE "C" NOT NULL,
    dkim text COLLATE "C" NOT NULL,
    spf text COLLATE "C" NOT NULL,
    passed bigint NOT NULL,
    header_from text COLLATE "C" NOT NULL DEFAULT '',
    envelope_from text COLLATE "C",
    envelope_to text COLLATE "C",
    reasons text COLLATE "C" NOT NULL DEFAULT '[]',
    auth_results text COLLATE "C" NOT NULL DEFAULT '{}'
);
CREATE INDEX dmarc_records_report ON dmarc_records(report_seq, rowid);
CREATE INDEX dmarc_records_domain ON dmarc_records(domain_id, date_end);
CREATE INDEX dmarc_records_org ON dmarc_records(org_id);

CREATE TABLE thread_participants (
    thread_id text COLLATE "C" NOT NULL,
    address text COLLATE "C" NOT NULL,
    org_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (thread_id, address)
);
CREATE INDEX thread_participants_address ON thread_participants(org_id, address);

CREATE TABLE message_labels (
    message_id text COLLATE "C" NOT NULL,
    label text COLLATE "C" NOT NULL,
    thread_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (message_id, label)
);
CREATE TABLE thread_labels (
    thread_id text COLLATE "C" NOT NULL,
    label text COLLATE "C" NOT NULL,
    messages bigint NOT NULL,
    org_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C" NOT NULL,
    domain_id text COLLATE "C" NOT NULL,
    hidden bigint NOT NULL,
    last_message_at text COLLATE "C" NOT NULL,
    added_at text COLLATE "C" NOT NULL,
    PRIMARY KEY (thread_id, label)
);
CREATE INDEX thread_labels_inbox ON thread_labels(inbox_id, label, hidden, last_message_at, thread_id);
CREATE INDEX thread_labels_domain ON thread_labels(org_id, domain_id, label, hidden, last_message_at, thread_id);

CREATE TABLE contacts (
    org_id text COLLATE "C" NOT NULL,
    address text COLLATE "C" NOT NULL,
    name text COLLATE "C",
    last_at text COLLATE "C" NOT NULL,
    messages bigint NOT NULL,
    PRIMARY KEY (org_id, address)
);
CREATE INDEX contacts_recent ON contacts(org_id, last_at);

CREATE TABLE outbox (
    seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    org_id text COLLATE "C" NOT NULL,
    inbox_id text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    submitted_by text COLLATE "C",
    decided_by text COLLATE "C",
    payload text COLLATE "C" NOT NULL DEFAULT '{}',
    validation text COLLATE "C",
    send_at text COLLATE "C",
    due_at double precision,
    expires_at text COLLATE "C",
    reason text COLLATE "C",
    created_at text COLLATE "C" NOT NULL,
    updated_at text COLLATE "C" NOT NULL
);
CREATE INDEX outbox_org_status ON outbox(org_id, status, created_at);
CREATE INDEX outbox_inbox_status ON outbox(inbox_id, status, created_at);
CREATE INDEX outbox_due ON outbox(due_at) WHERE status IN ('scheduled', 'approved', 'pending_approval');
CREATE INDEX outbox_org_send_at ON outbox(org_id, status, send_at);
CREATE INDEX outbox_inbox_send_at ON outbox(inbox_id, status, send_at);

CREATE TABLE inbox_counts (
    inbox_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (inbox_id, name)
);

CREATE TABLE message_bigrams (
    bigram text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (bigram, seq)
);
CREATE INDEX message_bigrams_seq ON message_bigrams(seq);
CREATE TABLE bigram_backlog (below bigint NOT NULL);

CREATE TABLE blobs (
    org_id text COLLATE "C" NOT NULL,
    sha256 text COLLATE "C" NOT NULL,
    content bytea NOT NULL,
    PRIMARY KEY (org_id, sha256)
);
"""

# SQLite's triggers (migrations THREAD_PARTICIPANTS, MAIL_STATE_TRIGGERS, INBOX_COUNTERS_TRIGGERS,
# CJK_BIGRAMS) as PL/pgSQL, one function per table and event.
TRIGGERS = r"""
CREATE FUNCTION messages_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_labels (message_id, label, thread_id)
        SELECT NEW.id, j.value, NEW.thread_id FROM json_each(NEW.labels) AS j ON CONFLICT DO NOTHING;
    INSERT INTO thread_participants (thread_id, address, org_id)
        SELECT NEW.thread_id, json_extract(j.value, '$.identity'), NEW.org_id FROM json_each(NEW.participants) AS j
        WHERE coalesce(json_extract(j.value, '$.identity'), '') != '' ON CONFLICT DO NOTHING;
    INSERT INTO contacts (org_id, address, name, last_at, messages)
        SELECT NEW.org_id, c.address, max(c.name), NEW.created_at, count(*) FROM (
            SELECT NEW.sender AS address, json_extract(NEW.extra, '$.sender_name') AS name
            WHERE NEW.direction = 'inbound'
            UNION ALL
            SELECT json_extract(j.value, '$.identity'), NULL FROM json_each(NEW.participants) AS j
            WHERE NEW.direction = 'outbound' AND json_extract(j.value, '$.role') != 'sender') AS c
        WHERE coalesce(c.address, '') != '' GROUP BY c.address
        ON CONFLICT (org_id, address) DO UPDATE SET last_at = greatest(contacts.last_at, excluded.last_at),
            name = coalesce(excluded.name, contacts.name), messages = contacts.messages + excluded.messages;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_inserted AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION messages_inserted();

CREATE FUNCTION messages_relabelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_labels WHERE message_id = NEW.id
        AND label NOT IN (SELECT j.value FROM json_each(NEW.labels) AS j);
    INSERT INTO message_labels (message_id, label, thread_id)
        SELECT NEW.id, j.value, NEW.thread_id FROM json_each(NEW.labels) AS j ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_relabelled AFTER UPDATE OF labels ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_relabelled();

CREATE FUNCTION messages_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_labels WHERE message_id = OLD.id;
    DELETE FROM message_bigrams WHERE seq = OLD.seq;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_deleted AFTER DELETE ON messages FOR EACH ROW EXECUTE FUNCTION messages_deleted();

CREATE FUNCTION message_labels_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO thread_labels (thread_id, label, messages, org_id, inbox_id, domain_id, hidden, last_message_at,
                               added_at)
        SELECT t.id, NEW.label, 1, t.org_id, t.inbox_id, t.domain_id, t.hidden, t.last_message_at, commune_now()
        FROM threads t WHERE t.id = NEW.thread_id
        ON CONFLICT (thread_id, label) DO UPDATE SET messages = thread_labels.messages + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER message_labels_added AFTER INSERT ON message_labels
    FOR EACH ROW EXECUTE FUNCTION message_labels_added();

CREATE FUNCTION message_labels_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE thread_labels SET messages = messages - 1 WHERE thread_id = OLD.thread_id AND label = OLD.label;
    DELETE FROM thread_labels WHERE thread_id = OLD.thread_id AND label = OLD.label AND messages <= 0;
    RETURN NULL;
END $$;
CREATE TRIGGER message_labels_removed AFTER DELETE ON message_labels
    FOR EACH ROW EXECUTE FUNCTION message_labels_removed();

CREATE FUNCTION thread_label_names(thread text) RETURNS text LANGUAGE sql STABLE AS
    $$SELECT json_text_array(ARRAY(SELECT label FROM thread_labels WHERE thread_id = thread ORDER BY label))$$;

CREATE FUNCTION thread_labels_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE threads SET
        labels = thread_label_names(NEW.thread_id),
        hidden = CASE WHEN NEW.label = 'trash' THEN hidden | 2 ELSE hidden END,
        unread_count = CASE WHEN NEW.label = 'unread' THEN NEW.messages ELSE unread_count END
    WHERE id = NEW.thread_id;
    IF NEW.label = 'trash' OR (NEW.label IN ('unread', 'flagged') AND NEW.hidden = 0) THEN
        INSERT INTO inbox_counts (inbox_id, name, value) VALUES (NEW.inbox_id, NEW.label, 1)
        ON CONFLICT (inbox_id, name) DO UPDATE SET value = inbox_counts.value + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER thread_labels_added AFTER INSERT ON thread_labels
    FOR EACH ROW EXECUTE FUNCTION thread_labels_added();

CREATE FUNCTION thread_labels_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE threads SET unread_count = NEW.messages WHERE id = NEW.thread_id;
    RETURN NULL;
END $$;
CREATE TRIGGER thread_labels_counted AFTER UPDATE OF messages ON thread_labels
    FOR EACH ROW WHEN (NEW.label = 'unread') EXECUTE FUNCTION thread_labels_counted();

CREATE FUNCTION thread_labels_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE threads SET
        labels = thread_label_names(OLD.thread_id),
        hidden = CASE WHEN OLD.label = 'trash' THEN hidden & ~2 ELSE hidden END,
        unread_count = CASE WHEN OLD.label = 'unread' THEN 0 ELSE unread_count END
    WHERE id = OLD.thread_id;
    IF OLD.label = 'trash' OR (OLD.label IN ('unread', 'flagged') AND OLD.hidden = 0) THEN
        UPDATE inbox_counts SET value = value - 1 WHERE inbox_id = OLD.inbox_id AND name = OLD.label;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER thread_labels_removed AFTER DELETE ON thread_labels
    FOR EACH ROW EXECUTE FUNCTION thread_labels_removed();

CREATE FUNCTION thread_labels_recounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO inbox_counts (inbox_id, name, value)
    VALUES (NEW.inbox_id, NEW.label, CASE WHEN NEW.hidden = 0 THEN 1 ELSE -1 END)
    ON CONFLICT (inbox_id, name) DO UPDATE SET value = inbox_counts.value + excluded.value;
    RETURN NULL;
END $$;
CREATE TRIGGER thread_labels_recounted AFTER UPDATE OF hidden ON thread_labels
    FOR EACH ROW WHEN (NEW.label IN ('unread', 'flagged') AND (OLD.hidden = 0) != (NEW.hidden = 0))
    EXECUTE FUNCTION thread_labels_recounted();

CREATE FUNCTION threads_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.hidden = 0 THEN
        INSERT INTO inbox_counts (inbox_id, name, value) VALUES (NEW.inbox_id, 'threads', 1)
        ON CONFLICT (inbox_id, name) DO UPDATE SET value = inbox_counts.value + 1;
    END IF;
    UPDATE threads SET participant_count = (SELECT count(*) FROM thread_participants WHERE thread_id = NEW.id)
    WHERE id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER threads_inserted AFTER INSERT ON threads FOR EACH ROW EXECUTE FUNCTION threads_inserted();

CREATE FUNCTION threads_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE thread_labels SET hidden = NEW.hidden, last_message_at = NEW.last_message_at
    WHERE thread_id = NEW.id AND (hidden != NEW.hidden OR last_message_at != NEW.last_message_at);
    IF (OLD.hidden = 0) != (NEW.hidden = 0) THEN
        INSERT INTO inbox_counts (inbox_id, name, value)
        VALUES (NEW.inbox_id, 'threads', CASE WHEN NEW.hidden = 0 THEN 1 ELSE -1 END)
        ON CONFLICT (inbox_id, name) DO UPDATE SET value = inbox_counts.value + excluded.value;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER threads_keys_changed AFTER UPDATE OF hidden, last_message_at ON threads
    FOR EACH ROW EXECUTE FUNCTION threads_keys_changed();

CREATE FUNCTION threads_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM thread_labels WHERE thread_id = OLD.id;
    DELETE FROM thread_participants WHERE thread_id = OLD.id;
    IF OLD.hidden = 0 THEN
        UPDATE inbox_counts SET value = value - 1 WHERE inbox_id = OLD.inbox_id AND name = 'threads';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER threads_deleted AFTER DELETE ON threads FOR EACH ROW EXECUTE FUNCTION threads_deleted();

CREATE FUNCTION thread_participants_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE threads SET participant_count = participant_count + 1 WHERE id = NEW.thread_id;
    RETURN NULL;
END $$;
CREATE TRIGGER thread_participants_added AFTER INSERT ON thread_participants
    FOR EACH ROW EXECUTE FUNCTION thread_participants_added();

CREATE FUNCTION thread_participants_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE threads SET participant_count = participant_count - 1 WHERE id = OLD.thread_id;
    RETURN NULL;
END $$;
CREATE TRIGGER thread_participants_removed AFTER DELETE ON thread_participants
    FOR EACH ROW EXECUTE FUNCTION thread_participants_removed();

CREATE FUNCTION inboxes_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM inbox_counts WHERE inbox_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER inboxes_deleted AFTER DELETE ON inboxes FOR EACH ROW EXECUTE FUNCTION inboxes_deleted();
"""

INITIAL = COMPAT_FUNCTIONS + TABLES + TRIGGERS

# Twin of SQLite's COORDINATION: leases on the queues, named leases, shared rate limits, state created once
# per database, and event payloads too large for a notification.
COORDINATION = """
ALTER TABLE outbound_queue ADD COLUMN lease_owner text COLLATE "C";
ALTER TABLE outbound_queue ADD COLUMN lease_until double precision;
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner text COLLATE "C";
ALTER TABLE webhook_deliveries ADD COLUMN lease_until double precision;
ALTER TABLE outbox ADD COLUMN lease_owner text COLLATE "C";
ALTER TABLE outbox ADD COLUMN lease_until double precision;
CREATE TABLE leases (
    name text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C",
    lease_until double precision NOT NULL DEFAULT 0
);
CREATE TABLE rate_limits (
    bucket text COLLATE "C" PRIMARY KEY,
    tokens double precision NOT NULL,
    stamp double precision NOT NULL,
    allowed bigint NOT NULL DEFAULT 1
);
CREATE TABLE server_state (
    name text COLLATE "C" PRIMARY KEY,
    value text COLLATE "C" NOT NULL,
    created_at text COLLATE "C" NOT NULL
);
CREATE TABLE event_payloads (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    payload text COLLATE "C" NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX event_payloads_created ON event_payloads(created_at);
"""

PG_MIGRATIONS: list[tuple[str, str]] = [
    ("initial", INITIAL),
    ("coordination", COORDINATION),
]
"""(name, script) in order; a script runs as one multi-statement string in one transaction."""


def migrate(conn) -> int:
    """Run every migration not yet recorded, under an advisory lock so that concurrent starts (several
    nodes, `commune-server migrate`) run each exactly once. `conn` is a psycopg connection in autocommit
    mode. Returns how many migrations ran."""
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at text NOT NULL)")
        schema = conn.execute("SELECT quote_ident(current_schema())").fetchone()[0]
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}
        ran = 0
        for name, script in PG_MIGRATIONS:
            if name in done:
                continue
            with conn.transaction():
                conn.execute(script.replace("@schema@", schema))
                conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (%s, now()::text)", (name,))
            ran += 1
        return ran
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
