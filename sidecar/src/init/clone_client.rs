//! Receiving a copy: ask peers how they are, stream the chosen donor's backup
//! into the extractor, accept it only after the donor's verdict, make it
//! consistent, and record where it stands for the agent.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use ebisu_api::{
    Flavor as FlavorFamily,
    agent::{AgentStatus, PATH_CLONE, PATH_STATUS},
};
use ebisu_mysql::{Flavor, position};
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::Settings;
use crate::{
    backup_tool,
    clone_stream::{self, Decoder, Item},
    donor::{Donor, Peer},
    seed_marker,
};

/// Why a copy was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP exchange failed.
    #[error("failed to fetch the clone from {url}: {source}")]
    Http {
        /// Donor URL.
        url: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The donor refused.
    #[error("failed to fetch the clone from {url}: donor answered {status}: {body}")]
    Refused {
        /// Donor URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// The stream was truncated, failed or malformed.
    #[error(transparent)]
    Stream(#[from] clone_stream::Error),
    /// A local tool failed.
    #[error("failed to {action}: {detail}")]
    Tool {
        /// What was being done.
        action: &'static str,
        /// Exit status or error.
        detail: String,
    },
    /// The copy's position could not be read.
    #[error("failed to read the copy's position: {0}")]
    Position(String),
    /// The marker could not be written.
    #[error(transparent)]
    Marker(#[from] seed_marker::Error),
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default()
}

/// Asks every peer's agent for its status; a silent peer has `status: None`.
pub async fn fetch_peers(urls: &[String]) -> Vec<Peer> {
    let client = client();
    let asks = urls.iter().map(|url| {
        let client = client.clone();
        async move {
            let status = async {
                let response = client
                    .get(format!("{url}{PATH_STATUS}"))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await
                    .ok()?;
                let bytes = response.error_for_status().ok()?.bytes().await.ok()?;
                serde_json::from_slice::<AgentStatus>(&bytes).ok()
            }
            .await;
            Peer {
                agent_url: url.clone(),
                status,
            }
        }
    });
    futures::future::join_all(asks).await
}

/// Copies `donor`'s data into the (empty) data directory, prepares it and
/// records its position. On error the caller wipes the directory.
pub async fn seed_from(settings: &Settings, donor: &Donor, token: &str) -> Result<u64, Error> {
    let bytes = receive(settings, &donor.agent_url, token).await?;
    prepare(settings).await?;
    let gtid = read_position(settings)?;
    seed_marker::write(&settings.data_dir, &donor.seed_marker(gtid, bytes))?;
    Ok(bytes)
}

/// Streams the donor's backup into the extractor; returns the bytes received.
pub async fn receive(settings: &Settings, url: &str, token: &str) -> Result<u64, Error> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| Error::Tool {
        action: "create the data directory",
        detail: e.to_string(),
    })?;
    let http = |source| Error::Http {
        url: url.to_owned(),
        source,
    };
    let mut response = client()
        .get(format!("{url}{PATH_CLONE}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(http)?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return Err(Error::Refused {
            url: url.to_owned(),
            status,
            body,
        });
    }
    let line = backup_tool::extract(settings.family, &settings.data_dir);
    let mut extractor = line
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Tool {
            action: "start the extractor",
            detail: e.to_string(),
        })?;
    let Some(mut stdin) = extractor.stdin.take() else {
        return Err(Error::Tool {
            action: "start the extractor",
            detail: "no stdin".to_owned(),
        });
    };

    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut decoder = Decoder::default();
    let mut complete = None;
    while complete.is_none() {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // The connection broke mid-body: what arrived is a truncated copy.
            Err(e) => {
                tracing::debug!(error = %e, "clone body ended abnormally");
                return Err(clone_stream::Error::Truncated(decoder_bytes(&decoder)).into());
            }
        };
        decoder.feed(&chunk);
        while let Some(item) = decoder.next_item()? {
            match item {
                Item::Data(data) => stdin.write_all(&data).await.map_err(|e| Error::Tool {
                    action: "feed the extractor",
                    detail: e.to_string(),
                })?,
                Item::Complete(bytes) => complete = Some(bytes),
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let mib = decoder_bytes(&decoder) as f64 / f64::from(1 << 20);
            info!(
                donor = url,
                mib = format!("{mib:.0}"),
                rate_mib_s = format!("{:.1}", mib / started.elapsed().as_secs_f64()),
                "receiving clone"
            );
        }
    }
    // No verdict, no copy: the extractor is killed on drop and the caller wipes.
    let bytes = match complete {
        Some(bytes) => bytes,
        None => decoder.finish()?,
    };
    drop(stdin);
    let output = extractor
        .wait_with_output()
        .await
        .map_err(|e| Error::Tool {
            action: "finish extracting",
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Tool {
            action: "extract the stream",
            detail: backup_tool::failure(&output),
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(
        donor = url,
        bytes,
        seconds,
        rate_mib_s = format!("{:.1}", bytes as f64 / f64::from(1 << 20) / seconds),
        "clone received"
    );
    Ok(bytes)
}

fn decoder_bytes(decoder: &Decoder) -> u64 {
    match decoder.finish() {
        Ok(n) | Err(clone_stream::Error::Truncated(n)) => n,
        Err(_) => 0,
    }
}

/// Applies the redo log so the copy is consistent.
async fn prepare(settings: &Settings) -> Result<(), Error> {
    let line = backup_tool::prepare(settings.family, &settings.data_dir);
    let output = line
        .command()
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Tool {
            action: "start prepare",
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            action: "prepare the copy",
            detail: backup_tool::failure(&output),
        })
    }
}

/// The GTID position recorded by the backup tool, in the server's notation.
fn read_position(settings: &Settings) -> Result<String, Error> {
    let dialect = match settings.family {
        FlavorFamily::Mariadb => Flavor::MariaDb,
        // 8.0 and 8.4 write GTID sets the same way.
        FlavorFamily::Mysql => Flavor::MySql80,
    };
    for name in position::POSITION_FILE_NAMES {
        let path = settings.data_dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(contents) => {
                let parsed = position::parse_binlog_info(dialect, &contents)
                    .map_err(|e| Error::Position(e.to_string()))?;
                return Ok(parsed.gtid.to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Position(format!("{}: {e}", path.display()))),
        }
    }
    Err(Error::Position(format!(
        "none of {:?} in the copy",
        position::POSITION_FILE_NAMES
    )))
}
