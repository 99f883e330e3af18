//! The ebisu operator: reconciles each `MySQLCluster` into the Kubernetes
//! objects that run it, in the steps validate -> build -> apply -> status.
//!
//! `validate` and `build` are pure and hold every decision about what the
//! objects look like; `apply` is the only step that writes to the API server
//! (server-side apply, one field manager); `status` is computed from what was
//! applied and observed. `dereference` reads what a cluster is made of;
//! `clustering` talks to the database servers (observe, decide, execute);
//! `events` decides which Events to publish.

pub mod apply;
pub mod build;
pub mod claims;
pub mod clustering;
pub mod controller;
pub mod crd;
pub mod dereference;
pub mod ebs;
pub mod events;
pub mod fencing;
pub mod health;
pub mod init_failures;
pub mod leader;
pub mod online_config;
pub mod quantity;
pub mod rbac;
pub mod static_volumes;
pub mod status;
pub mod validate;
