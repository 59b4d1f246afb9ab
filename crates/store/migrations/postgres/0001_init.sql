-- Spillway's PostgreSQL schema, version 1. Never edit after it ships: add a new numbered file.
-- Durations are stored in nanoseconds, times as timestamptz, states as their stable names.

CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    tenant       TEXT,
    role         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX tokens_tenant ON tokens (tenant);

CREATE TABLE queues (
    tenant          TEXT NOT NULL REFERENCES tenants (name),
    name            TEXT NOT NULL,
    max_attempts    INTEGER NOT NULL,
    backoff_base_ns BIGINT NOT NULL,
    backoff_max_ns  BIGINT NOT NULL,
    lease_ns        BIGINT NOT NULL,
    retention_ns    BIGINT NOT NULL,
    paused          BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE jobs (
    id                       TEXT PRIMARY KEY,
    tenant                   TEXT NOT NULL,
    queue                    TEXT NOT NULL,
    name                     TEXT,
    labels                   JSONB NOT NULL,
    spec                     JSONB NOT NULL,
    priority                 INTEGER NOT NULL,
    burstable                BOOLEAN NOT NULL,
    idempotency_key          TEXT,
    delete_inputs_on_success BOOLEAN NOT NULL,
    has_inputs               BOOLEAN NOT NULL,
    inputs_deleted           BOOLEAN NOT NULL DEFAULT FALSE,
    task_count               INTEGER NOT NULL,
    cancel_requested         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at               TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (tenant, queue) REFERENCES queues (tenant, name),
    UNIQUE (tenant, idempotency_key)
);
CREATE INDEX jobs_tenant_queue ON jobs (tenant, queue, id);
CREATE INDEX jobs_labels ON jobs USING GIN (labels jsonb_path_ops);

CREATE TABLE tasks (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id            TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tenant            TEXT NOT NULL,
    queue             TEXT NOT NULL,
    idx               INTEGER NOT NULL,
    state             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    burstable         BOOLEAN NOT NULL,
    run_at            TIMESTAMPTZ NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    preemptions       INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    payload           JSONB,
    lease_token       TEXT,
    lease_worker      TEXT,
    lease_expires_at  TIMESTAMPTZ,
    exit_code         INTEGER,
    last_error        TEXT,
    result            JSONB,
    avoid_pool        TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ
);
-- The lease query: waiting tasks of a queue in lease order.
CREATE INDEX tasks_leasable ON tasks (tenant, queue, priority DESC, run_at, id)
    WHERE state IN ('scheduled', 'available', 'retrying');
-- The lease reaper.
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE state = 'leased';
-- Job counts by state, computed on read.
CREATE INDEX tasks_job_state ON tasks (job_id, state);
-- Queue stats and dead letters.
CREATE INDEX tasks_queue_state ON tasks (tenant, queue, state);

CREATE TABLE attempts (
    task_id     BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ,
    outcome     TEXT NOT NULL,
    exit_code   INTEGER,
    error       TEXT,
    log_tail    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    pool         TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    queues       TEXT[] NOT NULL,
    concurrency  INTEGER NOT NULL,
    state        TEXT NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0,
    started_at   TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL
);
CREATE INDEX workers_tenant ON workers (tenant, started_at DESC);
