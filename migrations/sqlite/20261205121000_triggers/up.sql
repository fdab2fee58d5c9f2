-- Issue 20: triggers. A shop or CRM posts JSON to /hooks/{slug}; the trigger's verification
-- scheme and (sealed) secret prove the caller, its mapping (JSON) reads the payload into a
-- message on its channel: an approved template, or free text.
CREATE TABLE triggers (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    channel_id BIGINT NOT NULL REFERENCES channels (id),
    template_id BIGINT REFERENCES templates (id),
    text TEXT,
    -- shopify, woocommerce, hubspot, standard_webhooks, api_key
    scheme TEXT NOT NULL,
    secret TEXT NOT NULL,
    mapping TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_by_label TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX triggers_name ON triggers (lower(name));

-- Every verified delivery, with what it did: queued, scheduled, skipped or refused (and why),
-- and the message it made. A retried delivery has the same dedup_key: the unique index turns
-- it away (NULL keys never collide).
CREATE TABLE trigger_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    trigger_id BIGINT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    dedup_key TEXT,
    delay_key TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    message_id BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    payload TEXT,
    received_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX trigger_events_dedup ON trigger_events (trigger_id, dedup_key);
CREATE INDEX trigger_events_log ON trigger_events (trigger_id, id);
CREATE INDEX trigger_events_delay ON trigger_events (trigger_id, delay_key) WHERE delay_key IS NOT NULL;
