-- Issue 20: messages scheduled for later (a single send with `send_at`, a delayed trigger, a
-- reminder) wait as `scheduled` until their time (`next_attempt_at`), then become `queued`.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN ('scheduled', 'queued',
    'sending', 'sent', 'delivered', 'read', 'failed', 'unknown', 'skipped', 'cancelled'));
-- The due scheduled messages, in time order, for the promotion step.
CREATE INDEX messages_scheduled ON messages (next_attempt_at, id) WHERE status = 'scheduled';
