-- Issue 20: reminder rules. A rule sends its content (an approved template with a variable
-- mapping from contact fields, or free text) on its channel relative to a contact's date
-- attribute: offset_minutes before (negative) or after it, or at at_time (HH:MM, local to the
-- contact) day_offset days before or after. scanned_at/scanned_id: the contacts (by updated_at,
-- id) already looked at, so the background step reads only what changed since.
CREATE TABLE reminder_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    channel_id BIGINT NOT NULL REFERENCES channels (id),
    template_id BIGINT REFERENCES templates (id),
    text TEXT,
    variables TEXT NOT NULL,
    attribute TEXT NOT NULL,
    offset_minutes INTEGER,
    at_time TEXT,
    day_offset INTEGER NOT NULL DEFAULT 0,
    time_zone TEXT NOT NULL,
    grace_minutes INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    scanned_at TIMESTAMP,
    scanned_id BIGINT NOT NULL DEFAULT 0,
    created_by_label TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX reminder_rules_name ON reminder_rules (lower(name));

-- One row per (rule, contact, value of the attribute): the unique index makes it sent once
-- whatever the number of workers. state: pending, sent, skipped (reason), cancelled (reason).
CREATE TABLE reminders (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    rule_id BIGINT NOT NULL REFERENCES reminder_rules (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    attribute_value TEXT NOT NULL,
    due_at TIMESTAMP,
    state TEXT NOT NULL,
    reason TEXT,
    message_id BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX reminders_once ON reminders (rule_id, contact_id, attribute_value);
CREATE INDEX reminders_due ON reminders (state, due_at);
CREATE INDEX reminders_rule ON reminders (rule_id, id);
