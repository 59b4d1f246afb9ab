-- Every applied migration is recorded with its name and the SHA-256 of its file, so that
-- start-up can refuse a database whose migrations differ from this build's files. Never edit
-- after it ships: add a new numbered file.

ALTER TABLE schema_migrations ADD COLUMN name TEXT;
ALTER TABLE schema_migrations ADD COLUMN checksum TEXT;
