-- The same as on PostgreSQL (where every status change writes into every index): indexes that
-- only some messages need now hold only those. The queue holds queued messages, a new index
-- holds the ones being sent (for the reaper, which scanned the whole table), and the optional
-- columns are indexed only where set.
DROP INDEX messages_channel_due;
CREATE INDEX messages_queued ON messages (channel_id, next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX messages_sending ON messages (lease_expires_at) WHERE status = 'sending';
DROP INDEX messages_campaign;
CREATE INDEX messages_campaign ON messages (campaign_id, status) WHERE campaign_id IS NOT NULL;
DROP INDEX messages_provider;
CREATE UNIQUE INDEX messages_provider ON messages (channel_id, provider_message_id) WHERE provider_message_id IS NOT NULL;
DROP INDEX messages_idempotency;
CREATE UNIQUE INDEX messages_idempotency ON messages (idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX messages_resend_of;
CREATE UNIQUE INDEX messages_resend_of ON messages (resend_of) WHERE resend_of IS NOT NULL;
