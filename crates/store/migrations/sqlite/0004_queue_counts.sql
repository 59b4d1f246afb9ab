-- Counts of tasks per queue, state and burstability, so queue stats, /metrics and the
-- autoscaler's demand read a few rows instead of counting every task (at ten million tasks
-- counting took ten seconds). Every write that inserts, moves or deletes tasks updates them
-- in its own transaction (store/src/sqlite/queries/counts.rs), so they are exact at every
-- commit. Not triggers: a trigger makes each statement that fires it open a statement journal
-- inside the writer's per-request savepoint, which cost three quarters of the throughput.
CREATE TABLE queue_counts (
    tenant     TEXT NOT NULL,
    queue      TEXT NOT NULL,
    state      TEXT NOT NULL,
    burstable  INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue, state, burstable)
) WITHOUT ROWID;

INSERT INTO queue_counts (tenant, queue, state, burstable, n)
    SELECT tenant, queue, state, burstable, count(*) FROM tasks
    GROUP BY tenant, queue, state, burstable;

-- Waiting tasks that may not be due yet, for demand: an `available` task is always due, so
-- due waiting tasks are the `available` count plus a range of this small index.
CREATE INDEX tasks_delayed ON tasks (tenant, queue, run_at, burstable)
    WHERE state = 'scheduled' OR state = 'retrying';

-- The mean run time of each queue's recent successes, for the autoscaler: a running mean of
-- the first 100, then an exponential moving average weighing each new success as one of 100.
-- Updated once per batch of completions. It replaces reading the queue's newest successes,
-- which walked the whole table from the newest task down for a queue with few of them (an
-- index of succeeded tasks would have cost every completion an index insert: 5% of the
-- store's throughput). Filled here from the successes already there.
CREATE TABLE queue_runtimes (
    tenant   TEXT NOT NULL,
    queue    TEXT NOT NULL,
    mean_us  REAL NOT NULL,
    samples  INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue)
) WITHOUT ROWID;

INSERT INTO queue_runtimes (tenant, queue, mean_us, samples)
    SELECT t.tenant, t.queue, avg(a.ended_at - a.started_at), min(count(*), 100)
    FROM tasks t JOIN attempts a ON a.task_id = t.id AND a.attempt = t.attempt
    WHERE t.state = 'succeeded' AND a.ended_at IS NOT NULL
    GROUP BY t.tenant, t.queue;

-- Tasks submitted to a queue in the last minute (arrivals), by time.
CREATE INDEX jobs_by_queue_created ON jobs (tenant, queue, created_at, task_count);
