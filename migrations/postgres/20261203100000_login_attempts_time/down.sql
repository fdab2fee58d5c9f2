DROP INDEX login_attempts_time;
