-- Single sends never wait behind a broadcast: the dispatcher claims a channel's queued single
-- sends (campaign_id IS NULL) before its queued broadcast messages, each from an ordered
-- partial index of its own. Every queued message is in exactly one of the two, as it was in
-- the one index they replace (queue_depth adds the two).
DROP INDEX messages_queued;
CREATE INDEX messages_queued_single ON messages (channel_id, next_attempt_at, id)
    WHERE status = 'queued' AND campaign_id IS NULL;
CREATE INDEX messages_queued_campaign ON messages (channel_id, next_attempt_at, id)
    WHERE status = 'queued' AND campaign_id IS NOT NULL;
-- A broadcast's recipients counted by state from the index alone (in state order, so that a
-- GROUP BY needs no sort), instead of reading every recipient row.
CREATE INDEX broadcast_recipients_status ON broadcast_recipients (broadcast_id, status);
