-- Foundation: settings, users, API keys, sign-in throttling, channels, audit log.
-- Booleans are stored as INTEGER 0/1 or as nullable timestamps (a Diesel MultiConnection
-- supports only the portable SQL types), timestamps are UTC.

CREATE TABLE app_settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'support_lead', 'marketer')),
    password_hash TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    session_epoch INTEGER NOT NULL DEFAULT 0,
    disabled_at TIMESTAMP,
    last_login_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'support_lead', 'marketer')),
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_by BIGINT REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);

CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    throttle_key TEXT NOT NULL,
    attempted_at TIMESTAMP NOT NULL
);
CREATE INDEX login_attempts_key_time ON login_attempts (throttle_key, attempted_at);

CREATE TABLE channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('whatsapp', 'sms', 'viber')),
    provider TEXT NOT NULL CHECK (provider IN ('sandbox', 'whatsapp_cloud', 'twilio', 'infobip')),
    name TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    secrets TEXT,
    rate_limit_per_second INTEGER NOT NULL,
    disabled_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'system')),
    actor_id BIGINT,
    actor_label TEXT NOT NULL,
    action TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_occurred ON audit_log (occurred_at);
CREATE INDEX audit_log_subject ON audit_log (subject_kind, subject_id);
