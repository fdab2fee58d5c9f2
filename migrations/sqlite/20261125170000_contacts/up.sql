-- Contacts, lists, consent, the conversation (inbound and outbound messages) and CSV imports.

CREATE TABLE contacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    time_zone TEXT NOT NULL DEFAULT '',
    -- A JSON object of string values.
    attributes TEXT NOT NULL DEFAULT '{}',
    -- The import that last wrote the row: finds duplicates within one file without holding
    -- every phone number of the file in memory.
    last_import_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every attribute name in use, for the export header, filters and the import mapping.
CREATE TABLE attribute_keys (
    key TEXT PRIMARY KEY NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE lists (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE list_members (
    list_id BIGINT NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    added_at TIMESTAMP NOT NULL,
    PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX list_members_contact ON list_members (contact_id);

-- Consent per contact and channel kind: a STOP to one SMS number means no SMS from this
-- business at all.
CREATE TABLE contact_consents (
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel_kind TEXT NOT NULL CHECK (channel_kind IN ('whatsapp', 'sms', 'viber')),
    status TEXT NOT NULL CHECK (status IN ('opted_in', 'opted_out')),
    source TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    changed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (contact_id, channel_kind)
);
CREATE INDEX contact_consents_kind_status ON contact_consents (channel_kind, status);

CREATE TABLE consent_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel_kind TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    actor_label TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL
);
CREATE INDEX consent_events_contact ON consent_events (contact_id, occurred_at);

-- The customer-service window per contact and channel account (the provider's rule is per
-- business number).
CREATE TABLE contact_windows (
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    last_inbound_at TIMESTAMP NOT NULL,
    PRIMARY KEY (contact_id, channel_id)
);

CREATE TABLE inbound_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    provider_message_id TEXT,
    body TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX inbound_messages_provider ON inbound_messages (channel_id, provider_message_id);
CREATE INDEX inbound_messages_contact ON inbound_messages (contact_id, received_at);

-- The outbox and the send history at once: every outbound message, from the composer, the API
-- or a broadcast, is one row here.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    channel_id BIGINT NOT NULL REFERENCES channels (id),
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    to_address TEXT NOT NULL,
    campaign_id BIGINT,
    template_id BIGINT,
    content_kind TEXT NOT NULL CHECK (content_kind IN ('text', 'template')),
    -- What the recipient reads, and the content as the adapter needs it (JSON).
    body TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'unknown', 'skipped', 'cancelled')),
    provider_message_id TEXT,
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_expires_at TIMESTAMP,
    idempotency_key TEXT,
    requested_by TEXT NOT NULL,
    resend_of BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    delivered_at TIMESTAMP,
    read_at TIMESTAMP,
    failed_at TIMESTAMP
);
CREATE INDEX messages_due ON messages (status, next_attempt_at);
CREATE INDEX messages_contact ON messages (contact_id, created_at);
CREATE INDEX messages_campaign ON messages (campaign_id, status);
CREATE INDEX messages_created ON messages (created_at);
CREATE UNIQUE INDEX messages_provider ON messages (channel_id, provider_message_id);
CREATE UNIQUE INDEX messages_idempotency ON messages (idempotency_key);

CREATE TABLE message_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    occurred_at TIMESTAMP NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, occurred_at);

CREATE TABLE imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    file_name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    list_id BIGINT REFERENCES lists (id) ON DELETE SET NULL,
    bytes_total BIGINT,
    bytes_read BIGINT NOT NULL DEFAULT 0,
    rows_read BIGINT NOT NULL DEFAULT 0,
    imported BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    requested_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

CREATE TABLE import_rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    import_id BIGINT NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number BIGINT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX import_rejections_import ON import_rejections (import_id, row_number);
