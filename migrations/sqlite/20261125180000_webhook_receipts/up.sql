-- Provider events already applied, by the provider's event id: providers retry webhooks for days,
-- and each event must change things once.
CREATE TABLE webhook_receipts (
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    PRIMARY KEY (channel_id, event_id)
);
CREATE INDEX webhook_receipts_received ON webhook_receipts (received_at);

-- Status reports that arrived before Herald recorded which message they are about (a provider
-- can report "delivered" before the send's answer is stored): kept until the message claims
-- them, or for seven days.
CREATE TABLE early_statuses (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    provider_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    error_class TEXT,
    occurred_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL
);
CREATE INDEX early_statuses_message ON early_statuses (channel_id, provider_message_id);
