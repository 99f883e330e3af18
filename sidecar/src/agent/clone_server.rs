//! `GET /clone`: streams a physical backup of the local server to one
//! authenticated peer at a time, in the framed format of
//! [`crate::clone_stream`]: the backup tool's verdict comes after the data.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use ebisu_mysql::ServiceRole;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

use super::Shared;
use crate::{
    backup_tool,
    clone_stream::{self, Trailer},
};

/// Size of each data frame.
const CHUNK: usize = 1 << 20;

/// `GET /clone` (behind the clone token).
pub async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    let Ok(permit) = shared.clone_slot.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "already serving a clone; try another donor",
        )
            .into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        let _permit = permit;
        stream_backup(&shared, tx).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ebisu-clone")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

type Sender = tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>;

/// Runs the backup tool and forwards its output; always ends with a trailer
/// unless the peer went away.
async fn stream_backup(shared: &Shared, tx: Sender) {
    let started = Instant::now();
    let outcome = run_backup(shared, &tx, started).await;
    let trailer = match &outcome {
        Ok(bytes) => Trailer {
            ok: true,
            bytes: *bytes,
            error: None,
        },
        Err((bytes, error)) => {
            shared.metrics.clone_failures.inc();
            Trailer {
                ok: false,
                bytes: *bytes,
                error: Some(error.clone()),
            }
        }
    };
    match &outcome {
        Ok(bytes) => info!(
            bytes,
            seconds = started.elapsed().as_secs_f64(),
            "clone served"
        ),
        Err((bytes, error)) => warn!(bytes, %error, "clone failed"),
    }
    let _ = tx.send(Ok(clone_stream::end_frame(&trailer))).await;
}

async fn run_backup(shared: &Shared, tx: &Sender, started: Instant) -> Result<u64, (u64, String)> {
    let config = &shared.config;
    let scratch = tempfile::Builder::new()
        .prefix("ebisu-clone-")
        .tempdir_in(&config.scratch_dir)
        .map_err(|e| (0, format!("failed to create a scratch directory: {e}")))?;
    let server_cnf = std::fs::read_to_string(&config.server_config).map_err(|e| {
        (
            0,
            format!("failed to read {}: {e}", config.server_config.display()),
        )
    })?;
    let clone = shared.credentials.users.get(ServiceRole::Clone);
    let socket = config.socket();
    let defaults = scratch.path().join("backup.cnf");
    // Only this process's user may read the file holding the password.
    crate::server_config::write_atomically(
        &defaults,
        backup_tool::defaults_file(
            &server_cnf,
            clone.user.as_str(),
            clone.password.reveal(),
            &socket,
        )
        .as_bytes(),
    )
    .map_err(|e| {
        (
            0,
            format!("failed to write the backup tool's defaults file: {e}"),
        )
    })?;
    set_private(&defaults);
    let target = scratch.path().join("target");
    let line = backup_tool::backup(config.family, &defaults, &target);
    let mut child = line
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| (0, format!("failed to start {}: {e}", line.program)))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err((0, "failed to capture the backup tool's output".to_owned()));
    };
    let tail = tokio::spawn(last_lines(stderr));

    let mut sent: u64 = 0;
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        let n = match read_full(&mut stdout, &mut buf).await {
            Ok(n) => n,
            Err(e) => return Err((sent, format!("failed to read the backup stream: {e}"))),
        };
        if n == 0 {
            break;
        }
        let payload = buf.split().freeze();
        let delivered = tx.send(Ok(clone_stream::data_header(n))).await.is_ok()
            && tx.send(Ok(payload)).await.is_ok();
        if !delivered {
            // The receiver went away: stop the backup (kill_on_drop) and say so.
            return Err((sent, "the receiver disconnected".to_owned()));
        }
        sent += n as u64;
        shared.metrics.clone_bytes_served.inc_by(n as u64);
        if let Some(rate) = config.clone_rate_limit {
            pace(sent, rate, started).await;
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| (sent, format!("failed to wait for the backup tool: {e}")))?;
    let tail = tail.await.unwrap_or_default();
    if status.success() {
        Ok(sent)
    } else {
        Err((
            sent,
            format!("{} exited with {status}: {tail}", line.program),
        ))
    }
}

/// Reads until `buf` is full or the stream ends, so frames are large.
async fn read_full(
    stdout: &mut tokio::process::ChildStdout,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    let mut total = 0;
    while buf.len() < CHUNK {
        let n = stdout.read_buf(buf).await?;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total)
}

/// Sleeps so that `sent` bytes take at least `sent / rate` seconds.
async fn pace(sent: u64, rate: u64, started: Instant) {
    let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

async fn last_lines(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "backup_tool", "{line}");
        if tail.len() == 5 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into_iter().collect::<Vec<_>>().join(" | ")
}

fn set_private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
