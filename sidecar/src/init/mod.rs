//! `ebisu-sidecar init`, the data directory half: leave a non-empty data
//! directory alone; otherwise bootstrap the cluster's first server, or copy
//! the data of the best donor. Bootstrapping is only allowed when no peer holds
//! data: a new empty primary beside existing data would lose it.

mod applier;
mod bootstrap;
pub mod clone_client;
pub mod clone_plugin;
pub mod replay;
mod temp_server;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use backon::{ExponentialBuilder, Retryable};
use ebisu_api::{DonorPreference, Flavor as FlavorFamily};
use tracing::{info, warn};

use crate::{
    credentials::ClusterCredentials,
    donor::{self, Peer},
    identity::{Identity, StartRole},
};

/// Moves every entry of `from` into `to` (the same file system), then
/// removes `from`: how a copy or a fresh initialisation made beside the
/// volume's own entries (lost+found) takes its place.
fn move_contents(from: &Path, to: &Path) -> std::io::Result<()> {
    // Listed first: the directory is not changed while it is read.
    let names: Vec<_> = std::fs::read_dir(from)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    for name in names {
        std::fs::rename(from.join(&name), to.join(&name))?;
    }
    std::fs::remove_dir(from)
}

/// Why the data directory could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be listed or wiped.
    #[error("failed to {action} data directory {path}: {source}")]
    DataDir {
        /// What was being done.
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Bootstrapping the first server failed.
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::Error),
    /// Replaying the archive to a point failed.
    #[error(transparent)]
    Replay(#[from] replay::Error),
    /// Setting the data aside for a re-seed failed.
    #[error(transparent)]
    SetAside(#[from] crate::set_aside::Error),
    /// A re-seed's copy would not fit beside the data set aside.
    #[error("failed to start a fresh copy: {0}")]
    NoRoom(String),
    /// No donor could provide a copy in time.
    #[error(
        "failed to seed the data directory: no donor succeeded within {waited:?} (last error: {last})"
    )]
    NoDonor {
        /// How long we tried.
        waited: Duration,
        /// The last failure.
        last: String,
    },
}

/// What to do with the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It holds data: leave it alone.
    KeepExisting,
    /// Initialise the cluster's first server.
    Bootstrap,
    /// Copy from one of these, in order.
    Clone(Vec<donor::Donor>),
    /// Nobody can serve a copy yet, and bootstrapping is not allowed.
    Wait(&'static str),
}

/// Decides what to do; pure.
pub fn plan(
    data_dir_empty: bool,
    role: StartRole,
    bootstrap_allowed: bool,
    peers: &[Peer],
    preference: DonorPreference,
) -> Plan {
    if !data_dir_empty {
        return Plan::KeepExisting;
    }
    let donors = donor::rank(peers, preference);
    if !donors.is_empty() {
        return Plan::Clone(donors);
    }
    if donor::any_peer_has_data(peers) {
        return Plan::Wait("peers hold data but none can serve a copy yet");
    }
    match (role, bootstrap_allowed) {
        (StartRole::Primary, true) => Plan::Bootstrap,
        (StartRole::Primary, false) => Plan::Wait(
            "bootstrapping is not allowed: the operator allows it only for a cluster that never held data",
        ),
        (StartRole::Replica, _) => Plan::Wait("no donor is serving yet"),
    }
}

/// How `init` prepares the data directory.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Server family.
    pub family: FlavorFamily,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The server's my.cnf (written by the identity step).
    pub server_config: PathBuf,
    /// Directory for the temporary server's socket and scratch files.
    pub run_dir: PathBuf,
    /// Peers' agent base URLs.
    pub peers: Vec<String>,
    /// Which peers may donate.
    pub donor_preference: DonorPreference,
    /// Whether the cluster may be bootstrapped.
    pub bootstrap_allowed: bool,
    /// The application's database and owner, made when bootstrapping
    /// (`spec.database`).
    pub application: Option<Application>,
    /// How long to keep trying donors.
    pub donor_timeout: Duration,
    /// Bytes per second a CLONE-plugin copy may read (MySQL; MariaDB's
    /// donors limit what they serve themselves).
    pub clone_rate_limit: Option<u64>,
}

/// The application's database and its owner account.
#[derive(Debug, Clone)]
pub struct Application {
    /// The database.
    pub database: String,
    /// The owner and its password.
    pub owner: ebisu_mysql::Credentials,
}

/// Written before seeding starts and removed when it is done: a data
/// directory holding it was left by an interrupted seed and is wiped.
pub const SEEDING_MARKER: &str = "ebisu-seeding-in-progress";

/// One round's failure: try again later, or give up.
enum RoundError {
    Retry(String),
    Fatal(Error),
}

/// Prepares the data directory.
pub async fn run(
    settings: &Settings,
    identity: &Identity,
    credentials: &ClusterCredentials,
) -> Result<(), Error> {
    let dir = &settings.data_dir;
    let stamp = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    if let Some(kept) = crate::set_aside::carry_out(dir, &stamp)? {
        warn!(kept = %kept.display(), "the operator asked for a re-seed: the data was set aside there (not deleted) and the directory is seeded afresh");
    }
    if dir.join(SEEDING_MARKER).exists() {
        warn!(dir = %dir.display(), "an earlier seed was interrupted; wiping its partial data");
        wipe(dir)?;
    }
    if is_empty(dir)?
        && let Some(kept) = crate::set_aside::newest_kept(dir)?
    {
        let set_aside = crate::set_aside::bytes_under(&kept)?;
        let free = crate::set_aside::free_bytes(dir)?;
        crate::set_aside::room_for_copy(free, set_aside).map_err(Error::NoRoom)?;
    }
    let started = Instant::now();
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(15))
        .with_total_delay(Some(settings.donor_timeout))
        .without_max_times();
    let result = (|| round(settings, identity, credentials))
        .retry(backoff)
        .when(|e| matches!(e, RoundError::Retry(_)))
        .notify(|e, delay| {
            if let RoundError::Retry(reason) = e {
                info!(reason = %reason, retry_in = ?delay, "not seeded yet");
            }
        })
        .await;
    match result {
        Ok(()) => {
            let copied = crate::data_owner::take(dir, &identity.report_host, settings.family)
                .map_err(|source| Error::DataDir {
                    action: "record this instance as the owner of",
                    path: dir.to_owned(),
                    source,
                })?;
            if let Some(from) = copied {
                info!(%from, "the data was copied from another instance; it gets a server identity of its own");
            }
            Ok(())
        }
        Err(RoundError::Fatal(e)) => Err(e),
        Err(RoundError::Retry(last)) => Err(Error::NoDonor {
            waited: started.elapsed(),
            last,
        }),
    }
}

/// Looks at the peers once and seeds if it can.
async fn round(
    settings: &Settings,
    identity: &Identity,
    credentials: &ClusterCredentials,
) -> Result<(), RoundError> {
    let dir = &settings.data_dir;
    let empty = is_empty(dir).map_err(RoundError::Fatal)?;
    let peers = clone_client::fetch_peers(&settings.peers).await;
    match plan(
        empty,
        identity.role,
        settings.bootstrap_allowed,
        &peers,
        settings.donor_preference,
    ) {
        Plan::KeepExisting => {
            info!(dir = %dir.display(), "data directory holds data; leaving it alone");
            Ok(())
        }
        Plan::Bootstrap => {
            info!("no peer holds data: bootstrapping the cluster's first server");
            begin_seeding(dir).map_err(RoundError::Fatal)?;
            if let Err(e) = bootstrap::run(settings, credentials).await {
                // A half-initialised directory must never be started: start over next time.
                wipe(dir).map_err(RoundError::Fatal)?;
                return Err(RoundError::Fatal(e.into()));
            }
            end_seeding(dir).map_err(RoundError::Fatal)
        }
        Plan::Clone(donors) => {
            let mut last = String::new();
            let with_plugin = uses_clone_plugin(settings.family);
            for donor in donors {
                begin_seeding(dir).map_err(RoundError::Fatal)?;
                let seeded = if with_plugin {
                    clone_plugin::seed_from(settings, &donor, credentials)
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    clone_client::seed_from(settings, &donor, &credentials.clone_token)
                        .await
                        .map_err(|e| e.to_string())
                };
                match seeded {
                    Ok(bytes) => {
                        info!(donor = %donor.agent_url, bytes, "seeded from donor");
                        return end_seeding(dir).map_err(RoundError::Fatal);
                    }
                    Err(e) => {
                        warn!(donor = %donor.agent_url, error = %e, "copy rejected; wiping it and trying the next donor");
                        last = e.to_string();
                        wipe(dir).map_err(RoundError::Fatal)?;
                    }
                }
            }
            Err(RoundError::Retry(last))
        }
        Plan::Wait(reason) => Err(RoundError::Retry(reason.to_owned())),
    }
}

/// MySQL seeds with the CLONE plugin, which every server has, unless the
/// image carries xtrabackup (then the agents stream it, as for MariaDB).
fn uses_clone_plugin(family: FlavorFamily) -> bool {
    family == FlavorFamily::Mysql && !on_path("xtrabackup")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn begin_seeding(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(SEEDING_MARKER), b"seeding\n"))
        .map_err(|source| Error::DataDir {
            action: "mark seeding in",
            path: dir.to_owned(),
            source,
        })
}

fn end_seeding(dir: &Path) -> Result<(), Error> {
    std::fs::remove_file(dir.join(SEEDING_MARKER)).map_err(|source| Error::DataDir {
        action: "finish seeding in",
        path: dir.to_owned(),
        source,
    })
}

/// The entries of `dir` that are data (a missing directory has none).
fn data_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, Error> {
    let list_error = |source| Error::DataDir {
        action: "list",
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(list_error(source)),
    };
    let mut data = Vec::new();
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        if !crate::set_aside::is_not_data(&entry.file_name()) {
            data.push(entry);
        }
    }
    Ok(data)
}

/// Whether `dir` holds no data (missing counts as empty).
pub fn is_empty(dir: &Path) -> Result<bool, Error> {
    Ok(data_entries(dir)?.is_empty())
}

/// Removes everything in `dir` but `dir` itself, `lost+found` and data set
/// aside: a rejected copy must never be started.
pub fn wipe(dir: &Path) -> Result<(), Error> {
    for entry in data_entries(dir)? {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|source| Error::DataDir {
            action: "wipe",
            path,
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::{InstanceRole, agent::AgentStatus};

    fn peer(url: &str, role: InstanceRole, up: bool) -> Peer {
        Peer {
            agent_url: url.to_owned(),
            status: Some(AgentStatus {
                host: url.to_owned(),
                port: 3306,
                server_up: up,
                role,
                read_only: role != InstanceRole::Primary,
                gtid_executed: None,
                replication: None,
                seed_pending: false,
                relay_log_unread: false,
                relay_log_error: None,
                upgrade_error: None,
                source_heard: None,
                source_heard_ms_ago: None,
            }),
        }
    }

    #[test]
    fn existing_data_is_never_touched() {
        assert_eq!(
            plan(
                false,
                StartRole::Primary,
                true,
                &[],
                DonorPreference::PreferReplica
            ),
            Plan::KeepExisting
        );
    }

    #[test]
    fn first_server_bootstraps_only_when_nobody_has_data() {
        assert_eq!(
            plan(
                true,
                StartRole::Primary,
                true,
                &[],
                DonorPreference::PreferReplica
            ),
            Plan::Bootstrap
        );
        let silent = Peer {
            agent_url: "x".to_owned(),
            status: None,
        };
        assert_eq!(
            plan(
                true,
                StartRole::Primary,
                true,
                &[silent],
                DonorPreference::PreferReplica
            ),
            Plan::Bootstrap
        );
    }

    #[test]
    fn an_empty_volume_beside_existing_data_copies_instead_of_bootstrapping() {
        let peers = [peer("p", InstanceRole::Primary, true)];
        assert!(
            matches!(plan(true, StartRole::Primary, true, &peers, DonorPreference::PreferReplica), Plan::Clone(d) if d.len() == 1)
        );
        let fenced = [peer("f", InstanceRole::Unknown, true)];
        assert!(matches!(
            plan(
                true,
                StartRole::Primary,
                true,
                &fenced,
                DonorPreference::PreferReplica
            ),
            Plan::Wait(_)
        ));
    }

    #[test]
    fn a_peer_whose_server_is_down_still_holds_data() {
        let down = [peer("d", InstanceRole::Unknown, false)];
        assert!(matches!(
            plan(
                true,
                StartRole::Primary,
                true,
                &down,
                DonorPreference::PreferReplica
            ),
            Plan::Wait(_)
        ));
    }

    #[test]
    fn forbidden_bootstrap_and_replicas_wait() {
        assert!(matches!(
            plan(
                true,
                StartRole::Primary,
                false,
                &[],
                DonorPreference::PreferReplica
            ),
            Plan::Wait(_)
        ));
        assert!(matches!(
            plan(
                true,
                StartRole::Replica,
                true,
                &[],
                DonorPreference::PreferReplica
            ),
            Plan::Wait(_)
        ));
    }

    #[test]
    fn seeding_marker_is_removed_only_when_seeding_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        begin_seeding(dir.path()).expect("begin");
        assert!(dir.path().join(SEEDING_MARKER).exists());
        assert!(
            !is_empty(dir.path()).expect("listed"),
            "an interrupted seed is not empty: it is wiped"
        );
        end_seeding(dir.path()).expect("end");
        assert!(is_empty(dir.path()).expect("listed"));
    }

    #[test]
    fn emptiness_ignores_lost_and_found_and_wipe_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("lost+found")).expect("lost+found");
        assert!(is_empty(dir.path()).expect("listed"));
        std::fs::create_dir(dir.path().join("mysql")).expect("dir");
        std::fs::write(dir.path().join("mysql/user.frm"), b"x").expect("file");
        std::fs::write(dir.path().join("ibdata1"), b"x").expect("file");
        assert!(!is_empty(dir.path()).expect("listed"));
        wipe(dir.path()).expect("wiped");
        assert!(is_empty(dir.path()).expect("listed"));
        assert!(dir.path().join("lost+found").exists());
        assert!(is_empty(&dir.path().join("missing")).expect("missing is empty"));
    }
}
