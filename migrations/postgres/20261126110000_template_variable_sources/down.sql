ALTER TABLE templates DROP COLUMN variable_sources;
