-- A version of each repository's index entries, taken from one sequence by every batch
-- that changes them: a process keeping a tree's entries in memory knows they are still
-- current while the repository's version is the one it kept them at (a sequence, so a
-- repository deleted and made again never comes back to an old number).
CREATE SEQUENCE entry_versions;
CREATE TABLE repo_entry_versions (
    repo text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL
);
