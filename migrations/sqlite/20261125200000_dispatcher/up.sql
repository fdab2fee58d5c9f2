-- The outbox worker: which worker holds a message while sending it, the workers' heartbeats
-- (rows held by a worker that stopped beating become `unknown`), and each channel's shared
-- sending schedule (the next free send slot, for a rate limit that holds across workers).

ALTER TABLE messages ADD COLUMN leased_by TEXT;

-- Claiming takes the due messages of one channel in order; it replaces the global due index
-- (fewer indexes to update on every status change: the recent sends to one recipient, for
-- WhatsApp's pair limit, are found through messages_contact).
CREATE INDEX messages_channel_due ON messages (channel_id, status, next_attempt_at);
DROP INDEX messages_due;

CREATE TABLE workers (
    id TEXT PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    stopped_at TIMESTAMP
);

CREATE TABLE channel_throttle (
    channel_id BIGINT PRIMARY KEY NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- The earliest time the next message may leave (microseconds since the Unix epoch).
    next_slot_us BIGINT NOT NULL,
    -- Set when the provider said to slow down (429): no sends before it.
    paused_until_us BIGINT NOT NULL DEFAULT 0
);
