-- Servers that keep copies of what they serve, each acknowledging every batch that
-- changes a repository: `seen` is the snapshot in which the server last read every
-- repository's version, recorded once it had dropped its copies of those that moved
-- (every batch visible in it was applied). A batch waits until every live server's
-- `seen` shows it, or the server's lease ran out. `pid` is the backend of the server's
-- listening connection: a server whose session ended is not waited for. Unlogged: the
-- rows are renewed every second and mean nothing after a restart of the database.
CREATE UNLOGGED TABLE serve_leases (
    server text PRIMARY KEY,
    pid integer NOT NULL,
    seen pg_snapshot NOT NULL,
    lease_until timestamptz NOT NULL
);
