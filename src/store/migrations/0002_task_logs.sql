-- Running farm tasks' logs, as their agents send them, in parts at their byte offsets:
-- every server of a shared store shows the same log, whichever one an agent reached.
CREATE TABLE task_log_parts (
    build bigint NOT NULL,
    idx bigint NOT NULL,
    at bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (build, idx, at)
);
