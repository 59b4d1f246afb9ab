-- A finished job's state (succeeded, failed or cancelled), set together with finished_at, so a
-- list of failed jobs (the dashboard's "recent failures") reads an index range instead of
-- counting the tasks of every job until it finds some. Derived as JobState::derive derives it
-- from the counts; cleared with finished_at when tasks are requeued.
ALTER TABLE jobs ADD COLUMN finished_state TEXT;

UPDATE jobs SET finished_state = CASE
        WHEN cancel_requested
             AND EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state = 'cancelled')
            THEN 'cancelled'
        WHEN EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state = 'dead')
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM tasks WHERE job_key = jobs.key AND state = 'cancelled')
            THEN 'cancelled'
        ELSE 'succeeded'
    END
    WHERE finished_at IS NOT NULL;

CREATE INDEX jobs_by_finished_state ON jobs (finished_state, id)
    WHERE finished_state IS NOT NULL;
-- Jobs still running, for a list filtered by the queued or running state.
CREATE INDEX jobs_unfinished ON jobs (id) WHERE finished_at IS NULL;
