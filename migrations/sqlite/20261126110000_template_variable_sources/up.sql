-- The variable sources last used to send each template from the send page (JSON: per
-- placeholder, its source, contact field and fixed or fallback text), offered again next time.
ALTER TABLE templates ADD COLUMN variable_sources TEXT;
