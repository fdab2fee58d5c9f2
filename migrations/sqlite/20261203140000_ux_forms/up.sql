-- When "Test connection" last succeeded on a channel (the getting-started list ticks a real
-- account only then); cleared when the settings it connects with change.
ALTER TABLE channels ADD COLUMN tested_ok_at TIMESTAMP;
-- The header of an imported file and each rejected row as given (JSON arrays of the cells), so
-- the report shows the row and its download has the file's own columns.
ALTER TABLE imports ADD COLUMN header_cells TEXT;
ALTER TABLE import_rejections ADD COLUMN original TEXT NOT NULL DEFAULT '';
-- The audit log filtered by action or by actor, newest first.
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_kind, actor_id, id);
