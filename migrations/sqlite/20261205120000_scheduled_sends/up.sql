-- Issue 20: messages scheduled for later (a single send with `send_at`, a delayed trigger, a
-- reminder) wait as `scheduled` until their time (`next_attempt_at`), then become `queued`.
--
-- SQLite cannot alter a CHECK constraint. Widening one (every existing row still satisfies
-- it) is the case SQLite's ALTER TABLE documentation allows to be done by editing the stored
-- schema text instead of rebuilding the table (which would mean copying every message and
-- recreating its indexes and counter triggers). `writable_schema = RESET` reloads this
-- connection's schema; the CREATE INDEX below changes the schema cookie, so every other
-- connection reloads it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (status IN (''queued'', ''sending''',
                          'CHECK (status IN (''scheduled'', ''queued'', ''sending''')
 WHERE type = 'table' AND name = 'messages';
CREATE INDEX messages_scheduled ON messages (next_attempt_at, id) WHERE status = 'scheduled';
PRAGMA writable_schema = RESET;
