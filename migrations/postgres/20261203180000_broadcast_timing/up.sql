-- A broadcast's timing beyond its start: each recipient's local time, quiet hours in the
-- recipient's local time, and the zones its recipients were found in at launch (a JSON
-- document; NULL when none of this is used).
ALTER TABLE broadcasts ADD COLUMN timing TEXT;

-- The recipient's IANA zone, written at launch only for broadcasts that use local time or quiet
-- hours (from the contact's time zone, else its number's country when that has one zone, else
-- the broadcast's zone). The scheduler takes pending recipients zone by zone, those whose
-- local time has come and who are not in quiet hours.
ALTER TABLE broadcast_recipients ADD COLUMN zone TEXT;
CREATE INDEX broadcast_recipients_pending_zone ON broadcast_recipients (broadcast_id, zone, id)
    WHERE status = 'pending' AND zone IS NOT NULL;
