-- What the autoscaler's leader last saw and decided of each pool, so that every replica shows
-- it (GET /v1/pools, /metrics) and a new leader goes on from it. One row per configured pool;
-- `status` is the pool's status as the API shows it.
CREATE TABLE pool_status (
    pool     TEXT PRIMARY KEY,
    status   JSONB NOT NULL,
    saved_at TIMESTAMPTZ NOT NULL
);
