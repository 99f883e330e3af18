//! The per-pod helper of an ebisu instance. `install` copies the binary into
//! the pod so containers of the server's image can run it; `init` gives the
//! server its identity (server id from the pod ordinal, report host) and
//! writes its my.cnf from the ConfigMap's parts.
//!
//! The sidecar acts only on its own pod's server and data directory. It never
//! decides who is primary: that is the operator's job. It must not log
//! credentials.

pub mod identity;
pub mod install;
pub mod server_config;
