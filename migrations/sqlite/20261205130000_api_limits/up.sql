-- Issue 19: per-key rate limits and Idempotency-Key on every creating POST.
-- A key's own limit (requests a minute); NULL follows the default in app_settings
-- (`api_rate_limit_per_minute`), 0 means unlimited.
ALTER TABLE api_keys ADD COLUMN rate_limit_per_minute INTEGER;

-- Requests counted per key and fixed one-minute window (PostgreSQL only uses it: the budget is
-- shared by every instance; SQLite runs one instance and counts in memory).
CREATE TABLE api_rate_windows (
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    window_start BIGINT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, window_start)
);

-- What an Idempotency-Key created: written in the same transaction as the creation, so that a
-- repeat finds the resource (and a concurrent twin hits the unique index and replays).
CREATE TABLE idempotency_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    key TEXT NOT NULL,
    route TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    resource_kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (api_key_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
