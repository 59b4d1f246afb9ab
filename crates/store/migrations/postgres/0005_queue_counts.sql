-- Counts of tasks per queue, state and burstability, so queue stats, /metrics and the
-- autoscaler's demand read a few rows instead of counting every task (at ten million tasks
-- counting took ten seconds).
--
-- Several replicas write tasks at once, so a statement never updates a shared counter row
-- (every lease of a queue would wait for the previous one's commit): statement-level triggers
-- append the statement's net change per group to queue_count_changes, which nobody updates,
-- and queue_counts_fold() moves them into queue_counts now and then. Readers add both tables
-- up in one statement, so they see the counts of one snapshot, exact at every commit.
CREATE TABLE queue_counts (
    tenant     TEXT NOT NULL,
    queue      TEXT NOT NULL,
    state      TEXT NOT NULL,
    burstable  BOOLEAN NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (tenant, queue, state, burstable)
);

CREATE TABLE queue_count_changes (
    tenant     TEXT NOT NULL,
    queue      TEXT NOT NULL,
    state      TEXT NOT NULL,
    burstable  BOOLEAN NOT NULL,
    n          BIGINT NOT NULL
);
-- Every fold deletes what it moved: vacuum after a thousand dead rows rather than after a fifth
-- of the table, or readers scan a heap of dead changes (13 ms after a million-task burst).
ALTER TABLE queue_count_changes SET (autovacuum_vacuum_scale_factor = 0,
                                     autovacuum_vacuum_threshold = 1000);

INSERT INTO queue_counts (tenant, queue, state, burstable, n)
    SELECT tenant, queue, state, burstable, count(*) FROM tasks
    GROUP BY tenant, queue, state, burstable;

CREATE FUNCTION tasks_counted_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_changes (tenant, queue, state, burstable, n)
        SELECT tenant, queue, state, burstable, count(*) FROM new_rows
        GROUP BY tenant, queue, state, burstable;
    RETURN NULL;
END
$$;

-- Rows whose state did not change (heartbeats, cancel requests) cancel out and add nothing.
CREATE FUNCTION tasks_counted_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_changes (tenant, queue, state, burstable, n)
        SELECT tenant, queue, state, burstable, sum(n) FROM (
            SELECT tenant, queue, state, burstable, 1 AS n FROM new_rows
            UNION ALL
            SELECT tenant, queue, state, burstable, -1 AS n FROM old_rows
        ) change
        GROUP BY tenant, queue, state, burstable
        HAVING sum(n) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION tasks_counted_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_changes (tenant, queue, state, burstable, n)
        SELECT tenant, queue, state, burstable, -count(*) FROM old_rows
        GROUP BY tenant, queue, state, burstable;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_counted_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_counted_insert();
CREATE TRIGGER tasks_counted_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_counted_update();
CREATE TRIGGER tasks_counted_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_counted_delete();

-- Move the appended changes into queue_counts. One fold at a time (a transaction-scoped
-- advisory lock; a replica that finds another folding skips its turn), so two folds never
-- update the same counters in different orders. Returns how many changes it moved.
CREATE FUNCTION queue_counts_fold() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7305683719201) THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        DELETE FROM queue_count_changes RETURNING tenant, queue, state, burstable, n
    ), summed AS (
        SELECT tenant, queue, state, burstable, sum(n) AS n, count(*) AS changes FROM taken
        GROUP BY tenant, queue, state, burstable
    ), folded AS (
        INSERT INTO queue_counts AS c (tenant, queue, state, burstable, n)
            SELECT tenant, queue, state, burstable, n FROM summed
            ON CONFLICT (tenant, queue, state, burstable) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT coalesce(sum(changes), 0) INTO moved FROM summed;
    RETURN moved;
END
$$;

-- Waiting tasks that may not be due yet, for demand: an `available` task is always due, so
-- due waiting tasks are the `available` count plus a range of this small index.
CREATE INDEX tasks_delayed ON tasks (tenant, queue, run_at, burstable)
    WHERE state IN ('scheduled', 'retrying');

-- The newest succeeded tasks of a queue, for the autoscaler's mean run time: the old
-- (tenant, queue, state) index made PostgreSQL sort every succeeded task of the queue.
CREATE INDEX tasks_succeeded ON tasks (tenant, queue, id) WHERE state = 'succeeded';

-- Tasks submitted to a queue in the last minute (arrivals), by time.
CREATE INDEX jobs_by_queue_created ON jobs (tenant, queue, created_at) INCLUDE (task_count);
