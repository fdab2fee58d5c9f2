-- Issue 18 (message detail and retention).
-- What the provider said about a message, kept on its timeline: the answer to the send (on the
-- sent, failed, unknown or retry event) and the part of a status webhook about this message (on
-- the provider event). Redacted and capped at 8 KiB before it is written; NULL when there was
-- none, and once retention purged it.
ALTER TABLE message_events ADD COLUMN payload TEXT;
-- A status report that arrives before its message's send is recorded keeps its payload too.
ALTER TABLE early_statuses ADD COLUMN payload TEXT;

-- Retention: when a message's body and content were purged, and under how many days.
ALTER TABLE messages ADD COLUMN purged_at TIMESTAMP;
ALTER TABLE messages ADD COLUMN purged_after_days INTEGER;
ALTER TABLE inbound_messages ADD COLUMN purged_at TIMESTAMP;
