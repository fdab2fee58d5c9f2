-- Pruning old sign-in attempts (on every counted attempt) reads by time alone.
CREATE INDEX login_attempts_time ON login_attempts (attempted_at);
