-- Single sends: an idempotency key answers the same request with the same message, and a
-- different request under a used key is refused; the hash of the request tells them apart.
ALTER TABLE messages ADD COLUMN request_hash TEXT;
