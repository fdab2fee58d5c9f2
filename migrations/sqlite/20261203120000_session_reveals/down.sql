DROP TABLE session_reveals;
