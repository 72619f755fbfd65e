//! packyard: an RPM/DEB packaging and repository service.
//!
//! The data flow, and the module for each step (see `docs/ARCHITECTURE.md`):
//! module tree on disk → [`config`] (tree, resolved configuration) → [`lint`] (policy) →
//! [`pack`] (staged prefix → packages) → [`repo`] (publishing, indexes, keys), which keeps
//! metadata in [`store`] and bytes in [`blobs`]; [`lock`] freezes configurations.
//! [`version`] gives RPM and Debian ordering, [`layout`] the platforms and path templates.
//! [`server`] serves it all over HTTP, with [`auth`] tokens for writers; [`cli`] is the
//! thin command-line edge, doing repository commands through [`service`] on the data
//! directory or a server. Both call the same library functions.

pub mod agent;
pub mod archive;
pub mod atomic;
pub mod auth;
pub mod backends;
pub mod blobs;
pub mod build;
pub mod choice;
pub mod cli;
pub mod client;
pub mod config;
pub mod cores;
pub mod farm;
pub mod layout;
pub mod lint;
pub mod lock;
pub mod pack;
pub mod paths;
pub mod progress;
pub mod repo;
pub mod resolve;
pub mod server;
pub mod service;
pub mod store;
pub mod version;
