//! Integration tests: the `packyard` binary on the fixtures, and comparisons with real
//! tools. One test binary (builds are slow); a module per area.

mod support;

mod agent;
mod api_spec;
mod build;
mod cli;
mod cluster;
mod damaged;
mod develop;
mod farm;
mod fixtures_build;
mod hardlinks;
mod isolate;
mod keys;
mod lint_pack;
mod logs;
mod pack;
mod pg;
mod profiles;
mod race;
mod registered;
mod repo;
mod resolve;
mod roots;
mod s3;
mod serve;
mod source;
mod upgrade;
mod versions;
mod zypper;
