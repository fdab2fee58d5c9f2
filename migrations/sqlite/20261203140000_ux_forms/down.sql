DROP INDEX audit_log_actor;
DROP INDEX audit_log_action;
ALTER TABLE import_rejections DROP COLUMN original;
ALTER TABLE imports DROP COLUMN header_cells;
ALTER TABLE channels DROP COLUMN tested_ok_at;
