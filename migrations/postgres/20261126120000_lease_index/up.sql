-- A message holds a lease (lease_expires_at is set) exactly while it is `sending`, so the
-- reaper's index now names the lease, not the status. Recording a batch of sends filters on
-- `status = 'sending'`; PostgreSQL matched that to the old index's predicate and, expecting
-- almost no sending rows, joined the batch to every row of that index one by one (a quadratic
-- plan, seen in about a third of the benchmark's batches, each several times slower).
DROP INDEX messages_sending;
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
