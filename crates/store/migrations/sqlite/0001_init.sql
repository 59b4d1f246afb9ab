-- Spillway's SQLite schema, version 1.
-- Times are INTEGER microseconds since the Unix epoch (UTC); JSON columns are TEXT.

CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    tenant       TEXT,
    role         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE queues (
    tenant           TEXT NOT NULL REFERENCES tenants(name),
    name             TEXT NOT NULL,
    max_attempts     INTEGER NOT NULL,
    backoff_base_ms  INTEGER NOT NULL,
    backoff_max_ms   INTEGER NOT NULL,
    lease_ms         INTEGER NOT NULL,
    retention_ms     INTEGER NOT NULL,
    paused           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

CREATE TABLE jobs (
    -- Tasks refer to their job by this key (an explicit INTEGER PRIMARY KEY, so VACUUM keeps
    -- it): an integer keeps the per-job task index small and cheap to update.
    key                       INTEGER PRIMARY KEY,
    id                        TEXT NOT NULL UNIQUE,
    tenant                    TEXT NOT NULL,
    queue                     TEXT NOT NULL,
    name                      TEXT,
    labels                    TEXT NOT NULL,
    spec                      TEXT NOT NULL,
    priority                  INTEGER NOT NULL,
    burstable                 INTEGER NOT NULL,
    idempotency_key           TEXT,
    delete_inputs_on_success  INTEGER NOT NULL,
    has_inputs                INTEGER NOT NULL,
    inputs_deleted            INTEGER NOT NULL DEFAULT 0,
    task_count                INTEGER NOT NULL,
    cancel_requested          INTEGER NOT NULL DEFAULT 0,
    created_at                INTEGER NOT NULL,
    -- Set by the writer when the job's last task reaches a final state; cleared on requeue.
    finished_at               INTEGER
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_tenant ON jobs (tenant, id);
CREATE INDEX jobs_by_queue ON jobs (tenant, queue, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY,
    job_id            TEXT NOT NULL,
    job_key           INTEGER NOT NULL,
    tenant            TEXT NOT NULL,
    queue             TEXT NOT NULL,
    idx               INTEGER NOT NULL,
    state             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    burstable         INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    preemptions       INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    payload           TEXT,
    lease_token       TEXT,
    lease_worker      TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    exit_code         INTEGER,
    last_error        TEXT,
    result            TEXT,
    avoid_pool        TEXT,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER
);
-- The lease query walks this index in order: only waiting tasks are in it. Comparisons, not
-- IN (...): a constant IN list costs an ephemeral table on every UPDATE of a task.
CREATE INDEX tasks_leasable ON tasks (tenant, queue, priority DESC, run_at, id)
    WHERE (state = 'scheduled' OR state = 'available' OR state = 'retrying');
-- Job counts are computed from tasks grouped by state.
CREATE INDEX tasks_by_job ON tasks (job_key, state);
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE state = 'leased';
CREATE INDEX tasks_dead ON tasks (tenant, queue, id) WHERE state = 'dead';

CREATE TABLE attempts (
    task_id     INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT NOT NULL,
    exit_code   INTEGER,
    error       TEXT,
    log_tail    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    pool         TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    queues       TEXT NOT NULL,
    concurrency  INTEGER NOT NULL,
    state        TEXT NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);
CREATE INDEX workers_by_state ON workers (state, last_seen);
