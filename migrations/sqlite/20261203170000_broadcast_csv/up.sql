-- A broadcast's audience from a CSV upload: one row per good line of the file (its contact,
-- found or created by the contact import's rules, and the line's other cells as the
-- recipient's variables, a JSON object keyed by column header). A row belongs to one upload
-- (the import that read it): a new upload replaces the draft's rows once it has finished, so an
-- upload that fails half-way leaves the previous audience as it was.
CREATE TABLE broadcast_csv_rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    import_id BIGINT NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line BIGINT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    variables TEXT NOT NULL DEFAULT '{}'
);
-- One row per contact per upload (a number repeated in the file is a duplicate); also the
-- lookup of a batch of recipients' variables.
CREATE UNIQUE INDEX broadcast_csv_rows_contact ON broadcast_csv_rows (import_id, contact_id);
CREATE INDEX broadcast_csv_rows_broadcast ON broadcast_csv_rows (broadcast_id, import_id);
