//! One container as processes: start it (`ip netns exec` + `unshare --uts` +
//! `testcluster run-container`), in its own process group, logging to a file;
//! probe it; restart it with backoff as its pod's restart policy says; and
//! keep its state for the pod's status.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::launch::LaunchSpec;
use super::probe;
use crate::command;

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Its files could not be written or its process not spawned.
    #[error("failed to start container {name}: {source}")]
    Start {
        /// The container.
        name: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// First restart delay; doubled per crash up to [`BACKOFF_MAX`]. Shorter than
/// the kubelet's 10 s .. 5 min so that tests recover quickly.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long starts over with the shortest backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// What the pod's status needs to know about a container.
#[derive(Debug, Default, Clone)]
pub struct ContainerRun {
    /// Restarts so far.
    pub restart_count: i32,
    /// The current state.
    pub state: K8sState,
    /// The previous state (after a restart).
    pub last_state: Option<K8sState>,
    /// Readiness probe result.
    pub ready: bool,
    /// Startup probe passed (or none).
    pub started: bool,
    /// The main process (also its process group).
    pub pid: Option<u32>,
    /// The image it runs, by digest (`imageID`).
    pub image_id: String,
}

/// A container's shared state.
pub type SharedRun = Arc<Mutex<ContainerRun>>;

/// Updates a shared state.
pub fn update(run: &SharedRun, f: impl FnOnce(&mut ContainerRun)) {
    if let Ok(mut guard) = run.lock() {
        f(&mut guard);
    }
}

/// Reads a shared state.
pub fn snapshot(run: &SharedRun) -> ContainerRun {
    run.lock().map(|g| g.clone()).unwrap_or_default()
}

/// A waiting state with this reason and message.
pub fn waiting(reason: &str, message: Option<String>) -> K8sState {
    K8sState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..K8sState::default()
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// An event about a container for its pod: reason and message.
pub type ContainerEvent = (&'static str, String);

/// Where and how a container runs.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The pod's network namespace.
    pub netns: String,
    /// The pod's address (for tcp/http probes).
    pub ip: String,
    /// The pod's directory (launch specs).
    pub pod_dir: PathBuf,
    /// The log file of this container.
    pub log: PathBuf,
    /// Everything `run-container` needs.
    pub launch: LaunchSpec,
    /// The container spec.
    pub container: Container,
    /// The pod's termination grace period (liveness kills).
    pub grace: Duration,
    /// Events for the pod (reason, message), published by the pod task.
    pub events: tokio::sync::mpsc::UnboundedSender<ContainerEvent>,
    /// The image it runs, by digest (`imageID`).
    pub image_id: String,
}

impl Runtime {
    /// Starts the process (not waiting for it).
    pub fn spawn(&self) -> Result<Child, ContainerError> {
        let start = |source| ContainerError::Start {
            name: self.container.name.clone(),
            source,
        };
        // The log is live again (see `exited_marker`).
        let _ = std::fs::remove_file(exited_marker(&self.log));
        let spec_path = self
            .pod_dir
            .join(format!("{}.launch.json", self.container.name));
        let json = serde_json::to_vec_pretty(&self.launch).map_err(|e| start(e.into()))?;
        std::fs::write(&spec_path, json).map_err(start)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(start)?;
        let log_err = log.try_clone().map_err(start)?;
        let exe = std::env::current_exe().map_err(start)?;
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "unshare", "--uts"])
            .arg(exe)
            .arg("run-container")
            .arg(&spec_path)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(start)
    }
}

/// Exit code and reason of a finished process.
fn terminated(
    rt: &Runtime,
    status: std::process::ExitStatus,
    started: Time,
    message: Option<String>,
) -> K8sState {
    use std::os::unix::process::ExitStatusExt;
    let _ = std::fs::write(exited_marker(&rt.log), "");
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
    let fallback = rt.container.termination_message_policy.as_deref()
        == Some("FallbackToLogsOnError")
        && code != 0;
    let message = message.or_else(|| {
        fallback
            .then(|| std::fs::read(&rt.log).ok())
            .flatten()
            .map(|log| log_tail(&log))
    });
    K8sState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(if code == 0 { "Completed" } else { "Error" }.to_owned()),
            message,
            started_at: Some(started),
            finished_at: Some(now()),
            ..ContainerStateTerminated::default()
        }),
        ..K8sState::default()
    }
}

/// What the kubelet takes from a failed container's log as its message
/// under `FallbackToLogsOnError`: the last 80 lines, at most 2048 bytes.
fn log_tail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let mut start = tail.len().saturating_sub(2048);
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_owned()
}

/// Stops a process group: SIGTERM, `grace`, then SIGKILL.
pub async fn stop_group(pid: u32, grace: Duration) {
    command::signal_group(pid, "TERM").await;
    let started = Instant::now();
    while command::pid_alive(pid) && started.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    command::signal_group(pid, "KILL").await;
}

/// Runs an init container once: its exit status, or an error if it could not start.
pub async fn run_once(
    rt: &Runtime,
    run: &SharedRun,
    stop: &mut watch::Receiver<bool>,
) -> Option<i32> {
    let mut child = match rt.spawn() {
        Ok(child) => child,
        Err(error) => {
            update(run, |r| {
                r.state = waiting("RunContainerError", Some(error.to_string()))
            });
            return None;
        }
    };
    let started = now();
    let pid = child.id();
    update(run, |r| {
        r.pid = pid;
        r.state = K8sState {
            running: Some(ContainerStateRunning {
                started_at: Some(started.clone()),
            }),
            ..K8sState::default()
        };
    });
    let stopped = tokio::select! {
        status = child.wait() => Err(status.ok()),
        result = stop.wait_for(|s| *s) => Ok(result.is_ok()),
    };
    let status = match stopped {
        Err(status) => status,
        Ok(_) => {
            if let Some(pid) = pid {
                stop_group(pid, rt.grace).await;
            }
            child.wait().await.ok()
        }
    };
    let status = status?;
    let state = terminated(rt, status, started, None);
    let code = state.terminated.as_ref().map(|t| t.exit_code);
    update(run, |r| {
        r.pid = None;
        r.state = state;
    });
    code
}

/// How a run of a long-running container ended.
enum End {
    Exited(std::process::ExitStatus),
    LivenessFailed(String),
    Stopped,
}

/// Runs a regular container until the pod stops: restarts per `policy`
/// (`Always`, `OnFailure`, `Never`) with backoff, probes while it runs.
/// `paused` reports whether the node is stopped (no probes, no restarts).
pub async fn supervise(
    rt: Runtime,
    run: SharedRun,
    policy: String,
    mut stop: watch::Receiver<bool>,
    paused: impl Fn() -> bool + Send + Sync,
) {
    let mut backoff = BACKOFF_START;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut child = match rt.spawn() {
            Ok(child) => child,
            Err(error) => {
                update(&run, |r| {
                    r.state = waiting("RunContainerError", Some(error.to_string()))
                });
                return;
            }
        };
        let started = now();
        let began = Instant::now();
        let pid = child.id();
        update(&run, |r| {
            r.pid = pid;
            r.ready = false;
            r.started = rt.container.startup_probe.is_none();
            r.state = K8sState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..K8sState::default()
            };
        });
        let end = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => End::Exited(status),
                Err(_) => End::Stopped,
            },
            reason = probe_loop(&rt, &run, pid.unwrap_or(0), &paused) => End::LivenessFailed(reason),
            result = stop.wait_for(|s| *s) => { let _ = result.is_ok(); End::Stopped }
        };
        let (status, message) = match end {
            End::Exited(status) => (status, None),
            End::LivenessFailed(reason) => {
                let _ = rt.events.send((
                    "Killing",
                    format!(
                        "Container {} failed a probe, will be restarted",
                        rt.container.name
                    ),
                ));
                if let Some(pid) = pid {
                    stop_group(pid, rt.grace).await;
                }
                match child.wait().await {
                    Ok(status) => (status, Some(reason)),
                    Err(_) => return,
                }
            }
            // The pod stops it (preStop, TERM, grace, KILL) and waits for it here.
            End::Stopped => match child.wait().await {
                Ok(status) => {
                    let state = terminated(&rt, status, started, None);
                    update(&run, |r| {
                        r.pid = None;
                        r.ready = false;
                        r.state = state;
                    });
                    return;
                }
                Err(_) => return,
            },
        };
        let state = terminated(&rt, status, started, message);
        let failed = state.terminated.as_ref().is_some_and(|t| t.exit_code != 0);
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => failed,
            _ => true,
        };
        if began.elapsed() > BACKOFF_RESET {
            backoff = BACKOFF_START;
        }
        update(&run, |r| {
            r.pid = None;
            r.ready = false;
            if restart {
                r.last_state = Some(state.clone());
                r.state = waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {}s restarting failed container={}",
                        backoff.as_secs(),
                        rt.container.name
                    )),
                );
            } else {
                r.state = state.clone();
            }
        });
        if !restart {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            result = stop.wait_for(|s| *s) => { let _ = result.is_ok(); return }
        }
        while paused() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        update(&run, |r| r.restart_count += 1);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn period(probe: &Probe) -> Duration {
    Duration::from_secs(u64::try_from(probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10))
}

/// Probes until liveness fails; returns why.
async fn probe_loop(
    rt: &Runtime,
    run: &SharedRun,
    pid: u32,
    paused: &(impl Fn() -> bool + Send + Sync),
) -> String {
    let c = &rt.container;
    let began = Instant::now();
    // One tick per second; each probe runs when its period has elapsed.
    let mut last: [Option<Instant>; 3] = [None; 3];
    let mut failures: [i32; 3] = [0; 3];
    let mut successes: [i32; 3] = [0; 3];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if paused() {
            continue;
        }
        let started = snapshot(run).started;
        let probes: [(usize, Option<&Probe>); 3] = [
            (0, c.startup_probe.as_ref().filter(|_| !started)),
            (1, c.readiness_probe.as_ref().filter(|_| started)),
            (2, c.liveness_probe.as_ref().filter(|_| started)),
        ];
        if c.readiness_probe.is_none() && started {
            update(run, |r| r.ready = true);
        }
        for (i, probe) in probes {
            let Some(probe) = probe else { continue };
            let delay = Duration::from_secs(
                u64::try_from(probe.initial_delay_seconds.unwrap_or(0).max(0)).unwrap_or(0),
            );
            if began.elapsed() < delay || last[i].is_some_and(|t| t.elapsed() < period(probe)) {
                continue;
            }
            last[i] = Some(Instant::now());
            let result = probe::run(probe, c, &rt.ip, pid, &rt.launch).await;
            if paused() {
                continue;
            }
            match result {
                Ok(()) => {
                    failures[i] = 0;
                    successes[i] += 1;
                    if successes[i] >= probe.success_threshold.unwrap_or(1).max(1) {
                        match i {
                            0 => update(run, |r| r.started = true),
                            1 => update(run, |r| r.ready = true),
                            _ => {}
                        }
                    }
                }
                Err(error) => {
                    successes[i] = 0;
                    failures[i] += 1;
                    tracing::debug!(container = %c.name, %error, "probe failed");
                    let threshold = probe.failure_threshold.unwrap_or(3).max(1);
                    if failures[i] == threshold {
                        let kind = ["Startup", "Readiness", "Liveness"][i];
                        let _ = rt
                            .events
                            .send(("Unhealthy", format!("{kind} probe failed: {error}")));
                    }
                    if failures[i] >= threshold {
                        match i {
                            0 => return format!("Startup probe failed: {error}"),
                            1 => update(run, |r| r.ready = false),
                            _ => return format!("Liveness probe failed: {error}"),
                        }
                    }
                }
            }
        }
    }
}

/// Exists while the container's process is not running: `kubectl logs -f`
/// ends there, as it does when a container exits.
pub fn exited_marker(log: &Path) -> PathBuf {
    log.with_extension("exited")
}

/// The log file path of a container in a pod directory.
pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join("logs").join(format!("{container}.log"))
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn a_failed_containers_message_is_its_logs_last_lines() {
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(log.as_bytes());
        assert!(
            tail.starts_with("line 20\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        let long = "x".repeat(5000);
        assert_eq!(log_tail(long.as_bytes()).len(), 2048);
    }
}
