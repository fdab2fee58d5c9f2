DROP TABLE idempotency_keys;
DROP TABLE api_rate_windows;
ALTER TABLE api_keys DROP COLUMN rate_limit_per_minute;
