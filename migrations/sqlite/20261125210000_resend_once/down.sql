DROP INDEX messages_resend_of;
