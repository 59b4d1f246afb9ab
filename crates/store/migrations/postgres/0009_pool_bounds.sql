-- Pool bounds changed at run time (`spillway pools set`, PATCH /v1/pools/{name}), kept so that
-- they outlive a restart and reach every replica; a pool without a row has its configured
-- bounds. One row per changed pool.
CREATE TABLE pool_bounds (
    pool        TEXT PRIMARY KEY,
    min_workers BIGINT NOT NULL,
    max_workers BIGINT NOT NULL,
    set_at      TIMESTAMPTZ NOT NULL
);
