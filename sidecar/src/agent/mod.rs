//! `ebisu-sidecar agent`: the long-running companion of the server. Serves
//! health, readiness (the server answers queries; never about lag), status,
//! Prometheus metrics and clone streams to peers, on the first start after
//! a clone points replication at the recorded source, after a start on a
//! new release runs the flavor's upgrade step, on MariaDB keeps READ_ONLY
//! ADMIN to ebisu's own accounts, and archives the binary logs to S3 while
//! the operator assigns it.

mod archive;
mod binlog_purge;
mod clone_server;
pub mod fence;
mod metrics;
mod offline_mode;
pub mod primary_lease;
mod read_only_admin;
mod relay_log;
mod replication_bootstrap;
mod reseed;
pub mod source_watch;
mod table_check;
mod token;
mod upgrade;
pub mod wake_fence;

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use ebisu_api::{
    Flavor as FlavorFamily,
    agent::{
        HEADER_SEMI_SYNC, HEADER_SERVER, PATH_ARCHIVE, PATH_CLONE, PATH_HEALTHZ, PATH_METRICS,
        PATH_READYZ, PATH_RESEED, PATH_STATUS, SEMI_SYNC_FALLEN_BACK, SEMI_SYNC_WAITING,
        SERVER_READ_ONLY, SERVER_WRITABLE,
    },
};
use ebisu_mysql::Flavor;
use mysql_async::prelude::Queryable;
use tokio::sync::{OnceCell, Semaphore};
use tracing::{info, warn};

use crate::{
    credentials::ClusterCredentials,
    server::{self, Endpoint},
};

pub use metrics::Metrics;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("failed to serve HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve HTTP on.
    pub listen: String,
    /// The local server.
    pub endpoint: Endpoint,
    /// Host peers reach the server at.
    pub advertise_host: String,
    /// Port peers reach the server at.
    pub advertise_port: u16,
    /// Server family (picks the backup tool).
    pub family: FlavorFamily,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The server's my.cnf (the backup tool reads the same settings).
    pub server_config: PathBuf,
    /// Where temporary files go.
    pub scratch_dir: PathBuf,
    /// Bytes per second a clone may be served at.
    pub clone_rate_limit: Option<u64>,
    /// The cluster's failover delay: a freeze this long may have seen the
    /// server replaced, so it is fenced when the agent wakes.
    pub failover_after: Duration,
    /// The primary Lease this agent renews when its pod holds it (none
    /// outside Kubernetes, as in the data-plane tests).
    pub lease: Option<primary_lease::LeaseConfig>,
}

impl Config {
    /// The local server's socket, for the tools that read an option file
    /// (with a TCP endpoint, as in tests, the socket beside the scratch dir).
    fn socket(&self) -> PathBuf {
        match &self.endpoint {
            Endpoint::Socket(path) => path.clone(),
            Endpoint::Tcp(..) => self.scratch_dir.join("mysqld.sock"),
        }
    }
}

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct Shared {
    config: Config,
    credentials: ClusterCredentials,
    flavor: OnceCell<Flavor>,
    clone_slot: Arc<Semaphore>,
    metrics: Metrics,
    /// Why the last upgrade step failed, while it keeps failing.
    upgrade_error: Failing,
    /// Why the relay log could not be applied, while it cannot.
    relay_log_error: Failing,
    /// What the receiver last got from its source, and when.
    heard: Arc<std::sync::Mutex<source_watch::Heard>>,
    /// Connections kept open for a fence.
    fencer: Arc<fence::Fencer>,
    /// The binary log archive's assignment and progress.
    archive: archive::Archive,
    /// The last readiness look and when it was taken: concurrent and
    /// repeated `/readyz` requests share it.
    ready: tokio::sync::Mutex<Option<(tokio::time::Instant, ReadyLook)>>,
}

/// What a readiness look found.
type ReadyLook = Result<Ready, String>;

/// A server that answered a readiness look.
#[derive(Debug, Clone, Copy)]
struct Ready {
    read_only: bool,
    semi_sync_source: bool,
    semi_sync_waiting: bool,
}

/// How long a readiness look answers every `/readyz` request: a flood of
/// requests costs the server one query per period, never a connection each.
const READY_FRESH: Duration = Duration::from_millis(200);

/// Why a background step keeps failing, while it does (reported in
/// `/status`; logged once per new reason).
#[derive(Debug, Default)]
struct Failing(std::sync::Mutex<Option<String>>);

impl Failing {
    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|e| e.clone())
    }

    /// Records `error` (`None`: it works again); true when it changed.
    fn set(&self, error: Option<String>) -> bool {
        match self.0.lock() {
            Ok(mut slot) if *slot != error => {
                *slot = error;
                true
            }
            _ => false,
        }
    }
}

impl Shared {
    /// Shared state for an agent.
    pub fn new(config: Config, credentials: ClusterCredentials) -> Arc<Self> {
        Arc::new(Self {
            config,
            credentials,
            flavor: OnceCell::new(),
            clone_slot: Arc::new(Semaphore::new(1)),
            metrics: Metrics::new(),
            upgrade_error: Failing::default(),
            relay_log_error: Failing::default(),
            heard: Arc::default(),
            fencer: Arc::default(),
            archive: archive::Archive::default(),
            ready: tokio::sync::Mutex::new(None),
        })
    }

    /// The server's flavor: as read from it, or (before it ever answered)
    /// as the family says.
    fn known_flavor(&self) -> Flavor {
        self.flavor
            .get()
            .copied()
            .unwrap_or(match self.config.family {
                FlavorFamily::Mariadb => Flavor::MariaDb,
                FlavorFamily::Mysql => Flavor::MySql84,
            })
    }

    async fn monitor_conn(&self) -> Result<mysql_async::Conn, server::Error> {
        let monitor = self
            .credentials
            .users
            .get(ebisu_mysql::ServiceRole::Monitor);
        server::connect(
            &self.config.endpoint,
            monitor.user.as_str(),
            monitor.password.reveal(),
        )
        .await
    }

    /// A root connection over the server's socket (root@localhost: what
    /// fences, revokes and bootstraps replication).
    async fn root_conn(&self) -> Result<mysql_async::Conn, server::Error> {
        server::connect(
            &self.config.endpoint,
            "root",
            self.credentials.root_password.reveal(),
        )
        .await
    }

    /// A scratch directory holding `client.cnf`, the option file a client
    /// tool connects as root over the socket with (so no password is on a
    /// command line); the directory goes when the value is dropped.
    fn root_option_file(&self, prefix: &str) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
        let scratch = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.config.scratch_dir)?;
        let file = scratch.path().join("client.cnf");
        crate::server_config::write_atomically(
            &file,
            crate::backup_tool::defaults_file(
                "",
                "root",
                self.credentials.root_password.reveal(),
                &self.config.socket(),
            )
            .as_bytes(),
        )?;
        Ok((scratch, file))
    }

    async fn flavor(&self, conn: &mut mysql_async::Conn) -> Result<Flavor, server::Error> {
        if let Some(flavor) = self.flavor.get() {
            return Ok(*flavor);
        }
        let flavor = server::flavor(conn).await?;
        Ok(*self.flavor.get_or_init(|| async { flavor }).await)
    }

    /// A root connection and the server's flavor, for a request that acts
    /// on the server; the error names which of the two failed.
    async fn root_with_flavor(
        &self,
    ) -> Result<(mysql_async::Conn, Flavor), (&'static str, String)> {
        let mut conn = self
            .root_conn()
            .await
            .map_err(|e| ("connect to the server", e.to_string()))?;
        let flavor = self
            .flavor(&mut conn)
            .await
            .map_err(|e| ("read the server's flavor", e.to_string()))?;
        Ok((conn, flavor))
    }
}

/// A request's answer: its result as JSON, or its error as a 500 (logged
/// as `doing` failed).
fn answer<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
    doing: &str,
) -> Response {
    match result {
        Ok(done) => Json(done).into_response(),
        Err(error) => {
            warn!(%error, "{doing}");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

/// Runs the agent until the process is stopped.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(&shared.config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: shared.config.listen.clone(),
            source,
        })?;
    info!(listen = %shared.config.listen, "agent serving");
    tokio::spawn(background(shared.clone()));
    tokio::spawn(wake_fence::run(
        shared.clone(),
        shared.config.failover_after,
    ));
    tokio::spawn(source_watch::run(shared.clone(), shared.heard.clone()));
    tokio::spawn(read_only_admin::run(shared.clone()));
    tokio::spawn(offline_mode::run(shared.clone()));
    tokio::spawn(relay_log::run(shared.clone()));
    tokio::spawn(archive::run(shared.clone()));
    if let Some(lease) = shared.config.lease.clone() {
        tokio::spawn(primary_lease::run(
            shared.clone(),
            lease,
            shared.fencer.clone(),
        ));
    }
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(Error::Serve)
}

/// Requests to the unauthenticated endpoints that talk to the server
/// (status, metrics) in flight at once; more are refused with 503 at once,
/// so a flood can never use up the server's connections. Readiness has no
/// such limit: its looks are shared (see [`READY_FRESH`]).
const MAX_OBSERVERS: usize = 4;
/// The longest such a request may take.
const OBSERVER_TIMEOUT: Duration = Duration::from_secs(5);

fn router(shared: Arc<Shared>) -> Router {
    let bounded = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |_: tower::BoxError| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy or too slow; try again",
                )
            },
        ))
        .load_shed()
        .concurrency_limit(MAX_OBSERVERS)
        .timeout(OBSERVER_TIMEOUT);
    let acting = Router::new()
        .route(PATH_CLONE, get(clone_server::serve))
        .route(PATH_RESEED, axum::routing::post(reseed::request))
        .route(PATH_ARCHIVE, axum::routing::post(archive::assign))
        .route(
            ebisu_api::agent::PATH_BINLOG_PURGE,
            axum::routing::post(binlog_purge::request),
        )
        .route(
            ebisu_api::agent::PATH_TABLE_CHECK,
            axum::routing::post(table_check::request),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            token::require,
        ));
    let observers = Router::new()
        .route(PATH_STATUS, get(status))
        .route(PATH_METRICS, get(metrics::render))
        .layer(bounded);
    Router::new()
        .route(PATH_HEALTHZ, get(|| async { "ok" }))
        // Outside the observers' limit, so a flood of them cannot make the
        // primary unready; its looks are shared instead.
        .route(PATH_READYZ, get(readyz))
        .merge(observers)
        .merge(acting)
        .with_state(shared)
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Ready means the server answers queries. Lag never makes a replica unready:
/// whether it may be promoted is the operator's decision. On a semi-sync
/// source the answer also
/// says whether commits still wait for acknowledgements (the same look, so
/// the operator's twice-a-second probe learns of a fallback at once).
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.ready_look().await {
        Ok(ready) => {
            let server = if ready.read_only {
                SERVER_READ_ONLY
            } else {
                SERVER_WRITABLE
            };
            let mut response = (StatusCode::OK, [(HEADER_SERVER, server)], "ready").into_response();
            if ready.semi_sync_source {
                let state = if ready.semi_sync_waiting {
                    SEMI_SYNC_WAITING
                } else {
                    SEMI_SYNC_FALLEN_BACK
                };
                if let Ok(value) = axum::http::HeaderValue::from_str(state) {
                    response.headers_mut().insert(HEADER_SEMI_SYNC, value);
                }
            }
            response
        }
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

impl Shared {
    /// The latest readiness look, taken now unless one is fresh: requests
    /// that arrive while a look runs wait for it and share its answer.
    async fn ready_look(&self) -> ReadyLook {
        let mut slot = self.ready.lock().await;
        if let Some((at, look)) = slot.as_ref()
            && at.elapsed() < READY_FRESH
        {
            return look.clone();
        }
        let check = async {
            let mut conn = self.monitor_conn().await?;
            let flavor = self.flavor(&mut conn).await?;
            let read_only: Option<i64> = conn
                .query_first(flavor.fence_state_query())
                .await
                .map_err(|source| server::Error::Sql {
                    action: "read the fence state",
                    source,
                })?;
            let semi_sync = ebisu_mysql::driver::read_semi_sync(&mut conn, flavor).await?;
            Ok::<_, server::Error>(Ready {
                read_only: read_only.unwrap_or(1) != 0,
                semi_sync_source: semi_sync.source_enabled,
                semi_sync_waiting: semi_sync.source_active,
            })
        };
        let look = match tokio::time::timeout(Duration::from_secs(3), check).await {
            Ok(Ok(ready)) => Ok(ready),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the server did not answer in 3s".to_owned()),
        };
        *slot = Some((tokio::time::Instant::now(), look.clone()));
        look
    }
}

/// How long `/status` waits for the server: a frozen server must not stall
/// the operator's look at the whole cluster.
const STATUS_SERVER_TIMEOUT: Duration = Duration::from_secs(1);

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let read = tokio::time::timeout(STATUS_SERVER_TIMEOUT, read_status(&shared))
        .await
        .unwrap_or(Err(server::Error::Timeout("read the server")));
    let heard = shared
        .heard
        .lock()
        .ok()
        .and_then(|h| h.ago(tokio::time::Instant::now()));
    let (source_heard, source_heard_ms_ago) = match heard {
        Some((source, ago)) => (
            Some(source),
            Some(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX)),
        ),
        None => (None, None),
    };
    match read {
        Ok(mut status) => {
            status.source_heard = source_heard;
            status.source_heard_ms_ago = source_heard_ms_ago;
            Json(status).into_response()
        }
        Err(e) => {
            let down = ebisu_api::agent::AgentStatus {
                host: shared.config.advertise_host.clone(),
                port: shared.config.advertise_port,
                server_up: false,
                role: ebisu_api::InstanceRole::Unknown,
                read_only: true,
                gtid_executed: None,
                replication: None,
                seed_pending: crate::seed_marker::path(&shared.config.data_dir).exists(),
                relay_log_unread: shared.config.family == ebisu_api::Flavor::Mariadb,
                upgrade_error: shared.upgrade_error.get(),
                relay_log_error: shared.relay_log_error.get(),
                source_heard,
                source_heard_ms_ago,
            };
            warn!(error = %e, "status: server unavailable");
            (StatusCode::OK, Json(down)).into_response()
        }
    }
}

async fn read_status(shared: &Shared) -> Result<ebisu_api::agent::AgentStatus, server::Error> {
    let mut conn = shared.monitor_conn().await?;
    let mut status = server::status(
        &mut conn,
        &shared.config.advertise_host,
        shared.config.advertise_port,
    )
    .await?;
    status.seed_pending = crate::seed_marker::path(&shared.config.data_dir).exists();
    // Unknown counts as unread: nobody may start replication on a guess.
    status.relay_log_unread = relay_log::unread(shared, &mut conn).await.unwrap_or(true);
    status.upgrade_error = shared.upgrade_error.get();
    status.relay_log_error = shared.relay_log_error.get();
    shared.metrics.observe(&status);
    Ok(status)
}

/// Sets up replication after a clone once the server is up, then keeps the
/// metrics fresh.
async fn background(shared: Arc<Shared>) {
    let mut bootstrapped = false;
    let mut upgraded = false;
    loop {
        if !bootstrapped {
            match replication_bootstrap::run(&shared).await {
                Ok(()) => bootstrapped = true,
                Err(e) => warn!(error = %e, "replication bootstrap not done yet; retrying"),
            }
        }
        if !upgraded {
            // A server that is down is not an upgrade failure: only what
            // the tool or the version read said is reported.
            match upgrade::run(&shared).await {
                Ok(()) => {
                    upgraded = true;
                    shared.upgrade_error.set(None);
                }
                Err(upgrade::Error::Server(e)) => {
                    tracing::debug!(error = %e, "server not answering; upgrade step waits");
                }
                Err(e) => {
                    let error = e.to_string();
                    if shared.upgrade_error.set(Some(error.clone())) {
                        warn!(%error, "system table upgrade failed; trying again");
                    }
                }
            }
        }
        if let Err(e) = read_status(&shared).await {
            shared.metrics.server_down();
            tracing::debug!(error = %e, "server not answering");
        }
        tokio::time::sleep(Duration::from_secs(if bootstrapped { 10 } else { 2 })).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::names::secret_keys;

    /// A server that accepts connections, counts them and never answers.
    async fn hanging_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_flood_of_status_requests_is_refused_beyond_the_limit_and_readiness_is_shared() {
        let (port, accepted) = hanging_server().await;
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<(&str, &str)> = secret_keys::ALL
            .iter()
            .map(|k| (*k, "value-0123456789"))
            .collect();
        let mut entries = entries;
        for (key, value) in &mut entries {
            if key.ends_with("-user") {
                *value = match *key {
                    secret_keys::OPERATOR_USER => "ebisu_operator",
                    secret_keys::REPLICATION_USER => "ebisu_repl",
                    secret_keys::CLONE_USER => "ebisu_clone",
                    _ => "ebisu_monitor",
                };
            }
        }
        crate::credentials::write_dir(dir.path(), &entries).unwrap();
        let shared = Shared::new(
            Config {
                listen: String::new(),
                endpoint: Endpoint::Tcp("127.0.0.1".to_owned(), port),
                advertise_host: "db-0".to_owned(),
                advertise_port: 3306,
                family: FlavorFamily::Mariadb,
                data_dir: dir.path().join("data"),
                server_config: dir.path().join("my.cnf"),
                scratch_dir: dir.path().to_owned(),
                clone_rate_limit: None,
                failover_after: Duration::from_secs(3),
                lease: None,
            },
            crate::credentials::read(dir.path()).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(shared)).await });
        let client = reqwest::Client::new();
        let asks = (0..12).map(|_| {
            let client = client.clone();
            async move {
                let started = std::time::Instant::now();
                let status = client
                    .get(format!("http://{agent}{PATH_STATUS}"))
                    .send()
                    .await
                    .map(|r| r.status());
                (status, started.elapsed())
            }
        });
        let answers: Vec<_> = futures::future::join_all(asks).await;
        let refused_at_once = answers
            .iter()
            .filter(|(s, took)| {
                matches!(s, Ok(s) if *s == StatusCode::SERVICE_UNAVAILABLE)
                    && *took < Duration::from_millis(500)
            })
            .count();
        assert!(answers.iter().all(|(s, _)| s.is_ok()), "{answers:?}");
        assert!(refused_at_once >= 12 - MAX_OBSERVERS, "{answers:?}");
        assert!(
            accepted.load(std::sync::atomic::Ordering::SeqCst) <= MAX_OBSERVERS,
            "the server saw at most {MAX_OBSERVERS} connections"
        );
        // Readiness is outside that limit: a flood of it shares one look
        // (one more connection), and every request is answered.
        let asks = (0..12).map(|_| {
            let client = client.clone();
            async move {
                client
                    .get(format!("http://{agent}{PATH_READYZ}"))
                    .send()
                    .await
                    .map(|r| r.status())
            }
        });
        let answers: Vec<_> = futures::future::join_all(asks).await;
        assert!(
            answers
                .iter()
                .all(|s| matches!(s, Ok(s) if *s == StatusCode::SERVICE_UNAVAILABLE)),
            "{answers:?}"
        );
        assert!(
            accepted.load(std::sync::atomic::Ordering::SeqCst) <= MAX_OBSERVERS + 1,
            "readiness looks were shared"
        );
        // Liveness is never refused.
        let health = client
            .get(format!("http://{agent}{PATH_HEALTHZ}"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
}
