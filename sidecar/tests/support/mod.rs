//! Real servers for the sidecar's tests: each instance a data directory, a
//! server on a loopback port and socket, and the real `ebisu-sidecar` binary
//! as its init step and agent, wired as a pod would wire them. MariaDB runs
//! from the host; MySQL 9.7 runs inside the Debian `sid` root file system
//! that `tests/build-rootfs.sh` builds, as its image would: every process
//! of a MySQL instance runs chrooted there, in a mount namespace of its own
//! where the cluster's directory is bound at the same path as outside.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use ebisu_api::{
    agent::{self, AgentStatus},
    names::secret_keys,
};
use mysql_async::{OptsBuilder, prelude::Queryable};

pub const SIDECAR: &str = env!("CARGO_BIN_EXE_ebisu-sidecar");
pub const CLONE_TOKEN: &str = "test-clone-token-0123456789abcdef";

/// Which server family a test cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    MariaDb,
    MySql,
}

impl Server {
    fn flavor_arg(self) -> &'static str {
        match self {
            Self::MariaDb => "mariadb",
            Self::MySql => "mysql",
        }
    }
}

/// The MySQL root file system; tests/build-rootfs.sh builds it.
pub fn mysql_root() -> PathBuf {
    let cache = std::env::var_os("EBISU_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/ebisu"),
        PathBuf::from,
    );
    let root = cache.join("rootfs/mysql-sid-2");
    assert!(
        root.join(".ebisu-complete").exists(),
        "{} is missing: run tests/build-rootfs.sh (MySQL 9.7 from Debian sid)",
        root.display()
    );
    root
}

/// Binds `dir` at the same path inside `root`, then runs the command's
/// program chrooted there; the mount ends with the namespace.
const IN_ROOT: &str = r#"root=$1 dir=$2; shift 2
mkdir -p "$root$dir" && mount --bind "$dir" "$root$dir" && exec chroot "$root" "$@""#;

/// Skips nothing: the tests need MariaDB. tests/setup.sh installs it.
pub fn require_mariadb() {
    for tool in [
        "mariadbd",
        "mariadb-install-db",
        "mariadb-backup",
        "mbstream",
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "{tool} is missing: run tests/setup.sh (apt-get install mariadb-server mariadb-backup)"
        );
    }
}

/// moto's S3 on a free loopback port (installed by tests/install-moto.sh),
/// killed when dropped.
pub struct Moto {
    process: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/install-moto.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("--print-path")
            .output()
            .unwrap();
        let server = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let port = free_port();
        let process = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{server}: {e} (run tests/install-moto.sh)"));
        wait_for(Duration::from_secs(60), "moto to serve", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The environment an agent reaches this S3 with.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_S3", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// An S3 client of this endpoint.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One instance of a test cluster.
pub struct Instance {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub agent_port: u16,
    pub server: Server,
    mysqld: Option<Child>,
    agent: Option<Child>,
}

/// A cluster's shared files: credentials and my.cnf parts.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub name: String,
    pub server: Server,
    /// MySQL's root file system, for MySQL clusters.
    image_root: Option<PathBuf>,
    /// Environment every agent starts with (the S3 endpoint and keys).
    pub agent_env: Vec<(String, String)>,
}

impl Cluster {
    /// A MariaDB cluster.
    pub fn new(name: &str) -> Self {
        Self::of(Server::MariaDb, name)
    }

    pub fn of(server: Server, name: &str) -> Self {
        let image_root = match server {
            Server::MariaDb => {
                require_mariadb();
                None
            }
            Server::MySql => Some(mysql_root()),
        };
        let root = tempfile::Builder::new()
            .prefix("ebisu-dp-")
            .tempdir()
            .unwrap();
        let creds = root.path().join("credentials");
        std::fs::create_dir_all(&creds).unwrap();
        let password = |tag: &str| format!("{tag}-{}", rand::random::<u64>());
        for (key, value) in [
            (secret_keys::ROOT_PASSWORD, password("root")),
            (secret_keys::OPERATOR_USER, "ebisu_operator".to_owned()),
            (secret_keys::OPERATOR_PASSWORD, password("op")),
            (secret_keys::REPLICATION_USER, "ebisu_repl".to_owned()),
            (secret_keys::REPLICATION_PASSWORD, password("repl'\\quote")),
            (secret_keys::CLONE_USER, "ebisu_clone".to_owned()),
            (secret_keys::CLONE_PASSWORD, password("clone")),
            (secret_keys::CLONE_TOKEN, CLONE_TOKEN.to_owned()),
            (secret_keys::MONITOR_USER, "ebisu_monitor".to_owned()),
            (secret_keys::MONITOR_PASSWORD, password("mon")),
        ] {
            std::fs::write(creds.join(key), value).unwrap();
        }
        if image_root.is_some() {
            // Inside the root the sidecar is reached through the bound directory.
            std::fs::create_dir_all(root.path().join("bin")).unwrap();
            std::fs::copy(SIDECAR, root.path().join("bin/ebisu-sidecar")).unwrap();
        }
        Self {
            root,
            name: name.to_owned(),
            server,
            image_root,
            agent_env: Vec::new(),
        }
    }

    /// A command for `program` as this cluster's image runs it.
    fn command(&self, program: &str) -> Command {
        match &self.image_root {
            None => Command::new(program),
            Some(image_root) => {
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    IN_ROOT,
                    "in-root",
                ])
                .arg(image_root)
                .arg(self.root.path())
                .arg(program);
                cmd
            }
        }
    }

    fn sidecar(&self) -> Command {
        match self.server {
            Server::MariaDb => self.command(SIDECAR),
            Server::MySql => self.command(
                &self
                    .root
                    .path()
                    .join("bin/ebisu-sidecar")
                    .display()
                    .to_string(),
            ),
        }
    }

    pub fn credential(&self, key: &str) -> String {
        std::fs::read_to_string(self.root.path().join("credentials").join(key)).unwrap()
    }

    /// A new, empty instance with its own ports and my.cnf parts.
    pub fn instance(&self, ordinal: u32) -> Instance {
        let name = format!("{}-{ordinal}", self.name);
        let dir = self.root.path().join(&name);
        let port = free_port();
        let agent_port = free_port();
        for sub in ["data", "run", "parts", "server", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut common = format!(
            "[mysqld]\nuser = root\ndatadir = {data}\nsocket = {run}/mysqld.sock\npid_file = {run}/mysqld.pid\n\
             port = {port}\nbind_address = 127.0.0.1\nskip_name_resolve = ON\nread_only = ON\n\
             relay_log = relay-bin\ninnodb_buffer_pool_size = 32M\n\
             log_error = {dir}/error.log\ntmpdir = {dir}/tmp\n",
            data = dir.join("data").display(),
            run = dir.join("run").display(),
            dir = dir.display(),
        );
        // The flavor's part as the operator writes it (operator/src/build/config_map.rs).
        common.push_str(match self.server {
            Server::MariaDb => {
                "log_bin = mysql-bin\nbinlog_format = ROW\nlog_slave_updates = ON\n\
                 gtid_strict_mode = ON\nskip_slave_start = ON\nperformance_schema = OFF\n\
                 innodb_log_file_size = 48M\n"
            }
            Server::MySql => {
                "log_bin = binlog\ngtid_mode = ON\nenforce_gtid_consistency = ON\n\
                 log_replica_updates = ON\nsuper_read_only = ON\nskip_replica_start = ON\n\
                 plugin_load_add = mysql_clone.so\nsecure_file_priv = NULL\nmysqlx = OFF\n"
            }
        });
        std::fs::write(dir.join("parts/common.cnf"), common).unwrap();
        std::fs::write(dir.join("parts/primary.cnf"), "[mysqld]\n").unwrap();
        std::fs::write(dir.join("parts/replica.cnf"), "[mysqld]\n").unwrap();
        // As the operator writes it for a cluster that never had data.
        std::fs::write(dir.join("parts/bootstrap"), "allowed\n").unwrap();
        Instance {
            name,
            dir,
            port,
            agent_port,
            server: self.server,
            mysqld: None,
            agent: None,
        }
    }
}

impl Instance {
    pub fn agent_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.agent_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pod_args(&self, cluster: &Cluster, cmd: &mut Command, peers: &[String]) {
        cmd.arg("--pod-name")
            .arg(&self.name)
            .arg("--cluster")
            .arg(&cluster.name)
            .arg("--flavor")
            .arg(self.server.flavor_arg())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--server-config")
            .arg(self.dir.join("server/my.cnf"))
            .arg("--credentials")
            .arg(cluster.root.path().join("credentials"))
            .arg("--peer")
            .arg(peers.join(","))
            .env_remove("POD_NAME")
            .env_remove("EBISU_ROLE")
            .env_remove("EBISU_PEERS");
    }

    /// Runs `ebisu-sidecar init` to completion.
    pub fn init(&self, cluster: &Cluster, peers: &[String], donor_timeout_seconds: u64) -> Output {
        self.init_limited(cluster, peers, donor_timeout_seconds, None)
    }

    /// `init` with a clone rate limit in bytes per second (MySQL's CLONE
    /// reads no faster; MariaDB's init ignores it).
    pub fn init_limited(
        &self,
        cluster: &Cluster,
        peers: &[String],
        donor_timeout_seconds: u64,
        rate_limit: Option<u64>,
    ) -> Output {
        let mut cmd = cluster.sidecar();
        cmd.arg("init");
        if let Some(rate) = rate_limit {
            cmd.arg("--clone-rate-limit").arg(rate.to_string());
        }
        self.pod_args(cluster, &mut cmd, peers);
        cmd.arg("--config-parts")
            .arg(self.dir.join("parts"))
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--donor-timeout-seconds")
            .arg(donor_timeout_seconds.to_string())
            .env("RUST_LOG", "info");
        let output = cmd.output().unwrap();
        std::fs::write(self.dir.join("init.log"), &output.stderr).unwrap();
        output
    }

    pub fn start_mysqld(&mut self, cluster: &Cluster) {
        let log = std::fs::File::create(self.dir.join("mysqld.out")).unwrap();
        let program = match self.server {
            Server::MariaDb => "mariadbd",
            Server::MySql => "mysqld",
        };
        let child = cluster
            .command(program)
            .arg(format!(
                "--defaults-file={}",
                self.dir.join("server/my.cnf").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.mysqld = Some(child);
        wait_for(
            Duration::from_secs(60),
            "the server to accept connections",
            || std::os::unix::net::UnixStream::connect(self.dir.join("run/mysqld.sock")).is_ok(),
        );
    }

    pub fn start_agent(&mut self, cluster: &Cluster, rate_limit: Option<u64>) {
        let mut cmd = cluster.sidecar();
        cmd.arg("agent");
        self.pod_args(cluster, &mut cmd, &[]);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.agent_port))
            .arg("--socket")
            .arg(self.dir.join("run/mysqld.sock"))
            .arg("--advertise-host")
            .arg("127.0.0.1")
            .arg("--advertise-port")
            .arg(self.port.to_string())
            .arg("--scratch-dir")
            .arg(self.dir.join("tmp"))
            .env("RUST_LOG", "info")
            .envs(cluster.agent_env.iter().map(|(k, v)| (k, v)));
        if let Some(rate) = rate_limit {
            cmd.arg("--clone-rate-limit").arg(rate.to_string());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        self.agent = Some(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap());
        wait_for(Duration::from_secs(30), "the agent to serve", || {
            std::net::TcpStream::connect(("127.0.0.1", self.agent_port)).is_ok()
        });
    }

    /// Kills the server at once, as a lost machine would.
    pub fn kill_mysqld(&mut self) {
        if let Some(mut mysqld) = self.mysqld.take() {
            let _ = mysqld.kill();
            let _ = mysqld.wait();
        }
    }

    pub fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub async fn root(&self, cluster: &Cluster) -> mysql_async::Conn {
        let opts = OptsBuilder::default()
            .socket(Some(self.dir.join("run/mysqld.sock").display().to_string()))
            .user(Some("root"))
            .pass(Some(cluster.credential(secret_keys::ROOT_PASSWORD)));
        mysql_async::Conn::new(opts).await.unwrap()
    }

    pub async fn status(&self) -> AgentStatus {
        let bytes = reqwest::get(format!("{}/status", self.agent_url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// `/readyz`'s semi-sync header, when it has one.
    pub async fn readyz_semi_sync(&self) -> Option<String> {
        // Readiness looks are shared for 200 ms: ask after the last one.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let response = reqwest::get(format!("{}{}", self.agent_url(), agent::PATH_READYZ))
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
        response
            .headers()
            .get(agent::HEADER_SEMI_SYNC)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Plays the operator's part: this server waits for a semi-sync
    /// acknowledgement for at most `timeout_ms` per commit (`None`: never).
    pub async fn semi_sync_source(&self, cluster: &Cluster, timeout_ms: Option<u64>) {
        let mut conn = self.root(cluster).await;
        let flavor = ebisu_mysql::driver::read_flavor(&mut conn).await.unwrap();
        let active: Vec<String> = conn
            .query(ebisu_mysql::sql::ACTIVE_PLUGINS_QUERY)
            .await
            .unwrap();
        for plugin in flavor.semi_sync_plugins() {
            if !active.iter().any(|a| a.eq_ignore_ascii_case(plugin.name)) {
                conn.query_drop(plugin.install_statement()).await.unwrap();
            }
        }
        let statements = match timeout_ms {
            Some(timeout_ms) => flavor
                .semi_sync_as_primary(&ebisu_mysql::sql::SemiSync {
                    enabled: true,
                    wait_for_replicas: 1,
                    timeout_ms,
                })
                .unwrap(),
            None => vec![flavor.semi_sync_source_off()],
        };
        for statement in statements {
            conn.query_drop(statement).await.unwrap();
        }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.agent_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
    }

    pub async fn count(&self, cluster: &Cluster) -> i64 {
        let mut conn = self.root(cluster).await;
        conn.query_first("SELECT COUNT(*) FROM shop.orders")
            .await
            .unwrap()
            .unwrap_or(0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_agent();
        self.kill_mysqld();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The mount point left in the image's root (the bind ended with its
        // namespace); the cluster's own directory goes with its TempDir.
        if let Some(image_root) = &self.image_root {
            let inside = self.root.path().strip_prefix("/").unwrap();
            let _ = std::fs::remove_dir(image_root.join(inside));
        }
    }
}

pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Plays the operator's part: makes `primary` writable.
pub async fn promote(primary: &Instance, cluster: &Cluster) {
    let mut conn = primary.root(cluster).await;
    conn.query_drop("SET GLOBAL read_only = OFF").await.unwrap();
}

pub async fn write_rows(primary: &Instance, cluster: &Cluster, rows: usize, payload: usize) {
    let mut conn = primary.root(cluster).await;
    conn.query_drop("CREATE DATABASE IF NOT EXISTS shop")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE IF NOT EXISTS shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, note LONGTEXT) ENGINE=InnoDB")
        .await
        .unwrap();
    let note = "x".repeat(payload);
    for _ in 0..rows {
        conn.exec_drop(
            "INSERT INTO shop.orders (note) VALUES (?)",
            (note.as_str(),),
        )
        .await
        .unwrap();
    }
}

pub fn log_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn marker_exists(data_dir: &Path) -> bool {
    data_dir.join("ebisu-seed.json").exists()
}

/// The seed marker's `donor` (the agent URL of the peer that was copied).
pub fn marker_donor(data_dir: &Path) -> String {
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("ebisu-seed.json")).unwrap()).unwrap();
    marker["donor"].as_str().unwrap().to_owned()
}
