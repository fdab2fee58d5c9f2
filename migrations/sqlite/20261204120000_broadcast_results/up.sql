-- Issue 18, broadcast results.

-- Replies attributed to a broadcast: when a contact's message comes in on a channel, the latest
-- broadcast message to that contact on that channel delivered (or, with the delivery report
-- still to come, sent) within the reply window before it gets the time of that first reply on
-- its recipient row. Counting, filtering and "send again to: replied" then read one indexed
-- column instead of searching inbound messages for every recipient.
ALTER TABLE broadcast_recipients ADD COLUMN replied_at TIMESTAMP;
CREATE INDEX broadcast_recipients_replied ON broadcast_recipients (broadcast_id, id)
    WHERE replied_at IS NOT NULL;
-- The per-recipient table pages a broadcast's recipients in frozen order (keyset on id).
CREATE INDEX broadcast_recipients_order ON broadcast_recipients (broadcast_id, id);

-- "Send again to...": a follow-up draft names the broadcast it follows up, and its audience is
-- the contacts chosen when it was created (frozen then, not a filter evaluated again later).
ALTER TABLE broadcasts ADD COLUMN follow_up_of BIGINT ;
CREATE INDEX broadcasts_follow_up_of ON broadcasts (follow_up_of) WHERE follow_up_of IS NOT NULL;
CREATE TABLE broadcast_follow_up_contacts (
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (broadcast_id, contact_id)
);
