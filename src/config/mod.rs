//! Configurations: the module tree on disk (`tree`), its file format (`model`), name rules
//! (`names`), property expansion (`properties`) and resolution of one configuration in its
//! release (`resolve`). Everything after loading is pure.

pub mod model;
pub mod names;
pub mod profile;
pub mod properties;
pub mod resolve;
pub mod tree;

pub use model::{ModuleKind, Scope, TARGETS};
pub use properties::Origin;
pub use resolve::{
    DependencyType, Release, ResolveError, ResolveOptions, ResolvedConfiguration, Resolver,
    absolute, project, project_configurations, resolve_release,
};
pub use tree::{ConfigId, Location, ModuleId, Tree, TreeError};
