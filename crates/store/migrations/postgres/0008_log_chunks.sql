-- The live log of running attempts: the chunks of output a worker sends while its task runs,
-- in order of seq (given by the worker, so a chunk sent again is stored once). Every replica
-- and follower reads them here; once an attempt has ended, the log sealer writes them as one
-- object (<tenant>/logs/<job>/<index>/<attempt>.log) and deletes them. They go with their
-- task, should retention come first.
CREATE TABLE log_chunks (
    task_id  BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt  INTEGER NOT NULL,
    seq      BIGINT NOT NULL,
    data     BYTEA NOT NULL,
    PRIMARY KEY (task_id, attempt, seq)
);
