-- When a job finished and in which state (succeeded, failed or cancelled), kept on the job row:
-- retention reads a range of finished jobs per queue instead of aggregating the tasks of every
-- job each minute, and a list of failed jobs (the dashboard's "recent failures") reads an index
-- range instead of counting the tasks of every job until it finds some. Set after the commit
-- that finished the job's last task (and by retention for any a crash left unmarked); cleared
-- in the transaction that requeues one of its tasks. The state is derived as JobState::derive
-- derives it from the counts.
ALTER TABLE jobs ADD COLUMN finished_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN finished_state TEXT;

UPDATE jobs j SET
    finished_at = (SELECT max(t.finished_at) FROM tasks t WHERE t.job_id = j.id),
    finished_state = CASE
        WHEN j.cancel_requested
             AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'cancelled')
            THEN 'cancelled'
        WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'dead')
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'cancelled')
            THEN 'cancelled'
        ELSE 'succeeded'
    END
    WHERE NOT EXISTS (
        SELECT 1 FROM tasks t
        WHERE t.job_id = j.id AND t.state IN ('scheduled', 'available', 'leased', 'retrying')
    );

CREATE INDEX jobs_by_finished_state ON jobs (finished_state, id)
    WHERE finished_state IS NOT NULL;
CREATE INDEX jobs_unfinished ON jobs (id) WHERE finished_at IS NULL;
CREATE INDEX jobs_expiring ON jobs (tenant, queue, finished_at) WHERE finished_at IS NOT NULL;
-- Dead letters of a queue, in id order, without walking its other tasks.
CREATE INDEX tasks_dead ON tasks (tenant, queue, id) WHERE state = 'dead';
