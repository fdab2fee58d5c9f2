-- The send history (issue 18). Each message says where it came from: `person` (the send page,
-- a resend), `api` (an API key) or `broadcast`; issue 20 adds `trigger` and `reminder`. No
-- CHECK, so later sources need no table rebuild. Existing rows: a broadcast's messages have
-- campaign_id (a resend keeps it, but was asked for by someone), API sends were recorded by
-- service::sends as `API key "name"`, the rest came from people.
ALTER TABLE messages ADD COLUMN source TEXT NOT NULL DEFAULT 'person';
UPDATE messages SET source = CASE
    WHEN campaign_id IS NOT NULL AND resend_of IS NULL THEN 'broadcast'
    WHEN requested_by LIKE 'API key "%' THEN 'api'
    ELSE 'person'
END;

-- The history lists newest first on (created_at, id) and pages by keyset, so every index it
-- reads ends in (created_at, id): a page is a walk down one index, never a sort. The leading
-- columns are the filters: channel (+ status), status, contact, broadcast (+ status), template,
-- error code, and the sources other than broadcasts (partial: broadcast messages, the bulk of
-- the table, stay out of it; the query repeats its predicate). Each equality an index serves
-- leaves the rest in (created_at, id) order, so no combination sorts, even where SQLite,
-- without statistics, picks an index by its equalities alone.
DROP INDEX messages_created;
CREATE INDEX messages_history ON messages (created_at, id);
CREATE INDEX messages_history_channel ON messages (channel_id, created_at, id);
CREATE INDEX messages_history_channel_status ON messages (channel_id, status, created_at, id);
CREATE INDEX messages_history_status ON messages (status, created_at, id);
DROP INDEX messages_contact;
CREATE INDEX messages_contact ON messages (contact_id, created_at, id);
DROP INDEX messages_campaign;
CREATE INDEX messages_campaign ON messages (campaign_id, status, created_at, id) WHERE campaign_id IS NOT NULL;
CREATE INDEX messages_history_campaign ON messages (campaign_id, created_at, id) WHERE campaign_id IS NOT NULL;
CREATE INDEX messages_history_template ON messages (template_id, created_at, id) WHERE template_id IS NOT NULL;
CREATE INDEX messages_history_error ON messages (error_code, created_at, id) WHERE error_code IS NOT NULL;
CREATE INDEX messages_history_direct ON messages (source, created_at, id) WHERE source <> 'broadcast';
