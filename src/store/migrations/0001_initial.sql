-- packyard's metadata store on PostgreSQL, schema version 1. Released: never edit this
-- file; a change of schema is a new file (0002_...sql) added to MIGRATIONS in postgres.rs.
--
-- Records are the JSON the embedded store keeps (text, so any string survives); the
-- columns beside them are what the store finds records by. Text keys use the "C"
-- collation: rows come back in byte order, as the embedded store lists them.

CREATE TABLE repos (
    name text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);

-- listed_tree and listed_order: the index tree the package is listed in and its place
-- there (the record's `listed`; an order may hold NUL, so bytes), so a batch finds the
-- entry it replaces without reading the record.
CREATE TABLE packages (
    repo text COLLATE "C" NOT NULL,
    path text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    listed_tree text COLLATE "C",
    listed_order bytea,
    record text NOT NULL,
    PRIMARY KEY (repo, path)
);
CREATE INDEX packages_by_name ON packages (repo, name, path);

-- A package's pre-rendered entry in the index tree it is listed in. key is
-- `<order>\0<path>` (bytes: NUL sorts first), entry is IndexEntry::encode's bytes.
CREATE TABLE index_entries (
    repo text COLLATE "C" NOT NULL,
    tree text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (repo, tree, key)
);

CREATE TABLE segments (
    repo text COLLATE "C" NOT NULL,
    tree text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (repo, tree, key)
);

CREATE TABLE left_files (
    repo text COLLATE "C" NOT NULL,
    tree text COLLATE "C" NOT NULL,
    files text NOT NULL,
    PRIMARY KEY (repo, tree)
);

CREATE TABLE generations (
    repo text COLLATE "C" NOT NULL,
    dir text COLLATE "C" NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (repo, dir)
);

CREATE TABLE locks (
    configuration text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);

CREATE TABLE tokens (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);

-- Repositories whose delete began and did not end.
CREATE TABLE deleting (
    repo text COLLATE "C" PRIMARY KEY
);

-- Armored secret keys, as the caller gives them.
CREATE TABLE secret_keys (
    repo text COLLATE "C" PRIMARY KEY,
    armored text NOT NULL
);

-- The build farm. Build ids come from the sequence (the first is 1).
CREATE SEQUENCE farm_build_ids AS bigint START WITH 1;

CREATE TABLE farm_builds (
    id bigint PRIMARY KEY,
    record text NOT NULL
);

-- claimable: queued with every build dependency done; lease_expires: set while an agent
-- holds the task under a lease (never below 0).
CREATE TABLE tasks (
    build bigint NOT NULL,
    idx bigint NOT NULL,
    platform text COLLATE "C" NOT NULL,
    state text NOT NULL,
    claimable boolean NOT NULL,
    lease_expires bigint,
    record text NOT NULL,
    PRIMARY KEY (build, idx)
);
CREATE INDEX tasks_claimable ON tasks (build, idx) WHERE claimable;
CREATE INDEX tasks_leases ON tasks (lease_expires, build, idx) WHERE lease_expires IS NOT NULL;
