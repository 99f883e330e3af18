//! Running the machine's tools (`ip`, `openssl`, `mount`, `kill`, ...): the
//! crate forbids `unsafe`, so every system change goes through a command.

use std::process::Stdio;

use tokio::process::Command;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started at all.
    #[error("failed to start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The program ran and reported failure.
    #[error("failed to run `{command}` ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Runs `program args...`, returning its stdout; a non-zero exit is an error.
pub async fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(CommandError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command whose failure is expected at times (cleanup of things that
/// may already be gone): failures are logged at debug level and ignored.
pub async fn run_quiet(program: &str, args: &[&str]) {
    if let Err(error) = run(program, args).await {
        tracing::debug!(%error, "ignored");
    }
}

/// Sends `signal` (e.g. `TERM`, `KILL`, `STOP`, `CONT`) to a whole process
/// group: a container's processes, or a daemon and its children.
pub async fn signal_group(pgid: u32, signal: &str) {
    let target = format!("-{pgid}");
    run_quiet("kill", &[&format!("-{signal}"), "--", &target]).await;
}

/// Sends `signal` to one process.
pub async fn signal_pid(pid: u32, signal: &str) {
    run_quiet("kill", &[&format!("-{signal}"), &pid.to_string()]).await;
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
