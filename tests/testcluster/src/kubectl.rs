//! Driving the local cluster the way a user does, with kubectl and helm, for
//! the end-to-end tests and the benchmarks.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::controlplane;
pub use crate::layout::workspace_path;

#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("failed to start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("failed to run {program} {args}: {stderr}")]
    Failed {
        program: String,
        args: String,
        stderr: String,
    },
    #[error("timed out after {timeout:?} waiting for {what}")]
    TimedOut { what: String, timeout: Duration },
}

/// kubectl (and any other program that reads `KUBECONFIG`, such as helm)
/// pointed at one cluster.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    program: PathBuf,
}

impl Kubectl {
    /// The kubectl built with the control plane (same version as the API
    /// server), never whatever the machine has on its PATH.
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        Self {
            kubeconfig: kubeconfig.into(),
            program: controlplane::bin_dir().join("kubectl"),
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl -n NS patch OBJECT --type=merge -p PATCH`.
    pub fn merge_patch(&self, ns: &str, object: &str, patch: &str) -> Result<String, KubectlError> {
        self.try_run(&["-n", ns, "patch", object, "--type=merge", "-p", patch])
    }

    /// Runs kubectl; its trimmed stdout on success, its stderr as the error.
    pub fn try_run(&self, args: &[&str]) -> Result<String, KubectlError> {
        self.run_program(&self.program, args)
    }

    /// Runs another client (helm) against the same cluster.
    pub fn run_program(&self, program: &Path, args: &[&str]) -> Result<String, KubectlError> {
        let name = program.display().to_string();
        let out = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .map_err(|source| KubectlError::Spawn {
                program: name.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(KubectlError::Failed {
                program: name,
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// `kubectl -n NS get OBJECT -o jsonpath=PATH`, empty when the object is
    /// missing (callers poll for it to appear).
    pub fn jsonpath(&self, ns: &str, object: &str, path: &str) -> String {
        self.try_run(&["-n", ns, "get", object, "-o", &format!("jsonpath={path}")])
            .unwrap_or_default()
    }

    /// Polls `check` every 500 ms until it returns Some, for at most `timeout`.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, KubectlError> {
        let started = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return Ok(value);
            }
            if started.elapsed() >= timeout {
                return Err(KubectlError::TimedOut {
                    what: what.to_owned(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
