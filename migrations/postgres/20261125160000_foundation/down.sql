DROP TABLE audit_log;
DROP TABLE channels;
DROP TABLE login_attempts;
DROP TABLE api_keys;
DROP TABLE users;
DROP TABLE app_settings;
