-- Queue durations in milliseconds, as the SQLite backend keeps them (0001 stored nanoseconds).
-- Existing values are converted, truncating below a millisecond. Never edit after it ships:
-- add a new numbered file.

ALTER TABLE queues RENAME COLUMN backoff_base_ns TO backoff_base_ms;
ALTER TABLE queues RENAME COLUMN backoff_max_ns TO backoff_max_ms;
ALTER TABLE queues RENAME COLUMN lease_ns TO lease_ms;
ALTER TABLE queues RENAME COLUMN retention_ns TO retention_ms;
UPDATE queues SET backoff_base_ms = backoff_base_ms / 1000000,
                  backoff_max_ms = backoff_max_ms / 1000000,
                  lease_ms = lease_ms / 1000000,
                  retention_ms = retention_ms / 1000000;
