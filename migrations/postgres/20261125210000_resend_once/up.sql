-- A failed or unknown message is resent by hand at most once; a resend that fails is resent in turn.
CREATE UNIQUE INDEX messages_resend_of ON messages (resend_of);
