//! EBS snapshots with real content on the local cluster. moto keeps only a
//! snapshot's metadata; EBS keeps the volume's blocks as they were when
//! `CreateSnapshot` returned, and a volume created from a snapshot starts
//! with them. A thin proxy in front of moto (on the EC2 endpoint every
//! client uses) passes each call through and, when moto accepts one that
//! makes, uses or removes a snapshot, does the same to its content: the
//! volume's directory is copied while every process that has it mounted is
//! stopped (crash consistent, as EBS is: the server is never told), a
//! volume made from a snapshot starts with its copy, and a deleted
//! snapshot's copy goes. Snapshots are regional (any zone's volume may be
//! made from one); moto enforces the rest.
//!
//! EBS loads a volume made from a snapshot lazily and reports how far it
//! got in `DescribeVolumeStatus`, which moto does not implement: the proxy
//! answers it, loading such a volume's bytes (as `du` counts them) at its
//! `VolumeInitializationRate`, or at [`DEFAULT_RATE_MIB`] without one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::command;
use crate::layout::{BRIDGE_ADDR, EC2_PORT, Layout, MOTO_PORT};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Its port could not be bound.
    #[error("failed to listen on the EC2 endpoint {BRIDGE_ADDR}:{EC2_PORT}: {0}")]
    Listen(std::io::Error),
}

/// The largest call body the proxy accepts (EC2 and S3 calls in tests).
const MAX_BODY: usize = 256 << 20;

/// How fast the local cluster loads a volume made from a snapshot without
/// a `VolumeInitializationRate`, in MiB/s. EBS states no rate for its
/// default (it fluctuates); this one is slow enough for a test to watch
/// a small data directory load.
pub const DEFAULT_RATE_MIB: u64 = 1;

struct Proxy {
    http: reqwest::Client,
    volumes: PathBuf,
    snapshots: PathBuf,
    loads: Mutex<HashMap<String, Load>>,
}

/// A volume made from a snapshot, loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// When it was made.
    pub since: Instant,
    /// The bytes it loads.
    pub bytes: u64,
    /// Its `VolumeInitializationRate` in MiB/s, if it was made with one.
    pub rate_mib: Option<u64>,
}

impl Load {
    /// Percent loaded `at`, and the seconds left.
    pub fn progress(&self, at: Instant) -> (u64, u64) {
        let rate = self.rate_mib.unwrap_or(DEFAULT_RATE_MIB).max(1) << 20;
        let loaded = at.duration_since(self.since).as_secs_f64() * rate as f64;
        if self.bytes == 0 || loaded >= self.bytes as f64 {
            return (100, 0);
        }
        let percent = (loaded * 100.0 / self.bytes as f64) as u64;
        let left = ((self.bytes as f64 - loaded) / rate as f64).ceil() as u64;
        (percent.min(99), left)
    }
}

/// Listens on the EC2 endpoint and serves until the process ends.
pub async fn start(layout: &Layout) -> Result<(), ProxyError> {
    let listener = tokio::net::TcpListener::bind((BRIDGE_ADDR, EC2_PORT))
        .await
        .map_err(ProxyError::Listen)?;
    let proxy = Arc::new(Proxy {
        http: reqwest::Client::new(),
        volumes: layout.volumes(),
        snapshots: layout.snapshots(),
        loads: Mutex::new(HashMap::new()),
    });
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the EC2 proxy stopped");
        }
    });
    Ok(())
}

/// moto's own address.
pub fn moto_url() -> String {
    format!("http://127.0.0.1:{MOTO_PORT}")
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "call too large").into_response();
    };
    if let Some(volumes) = volume_status_call(&body) {
        return proxy.volume_status(&volumes);
    }
    let call = snapshot_call(&body);
    let frozen = match &call {
        Some(SnapshotCall::Create { volume }) => freeze(&proxy.volumes.join(volume)).await,
        _ => Vec::new(),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let answer = proxy
        .http
        .request(parts.method, format!("{}{path}", moto_url()))
        .headers(parts.headers)
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            thaw(&frozen).await;
            return (StatusCode::BAD_GATEWAY, format!("moto: {error}")).into_response();
        }
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    if let (Some(call), true) = (&call, status.is_success()) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(error) = proxy.content(call, &text).await {
            tracing::error!(?call, %error, "snapshot content");
        }
    }
    thaw(&frozen).await;
    for hop in [header::TRANSFER_ENCODING, header::CONNECTION] {
        headers.remove(hop);
    }
    response(status, headers, bytes)
}

fn response(status: StatusCode, headers: HeaderMap, bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

impl Proxy {
    /// Does to the content what moto did to the snapshot.
    async fn content(
        &self,
        call: &SnapshotCall,
        answer: &str,
    ) -> Result<(), command::CommandError> {
        match call {
            SnapshotCall::Create { volume } => {
                if let Some(snapshot) = element_text(answer, "snapshotId") {
                    copy(&self.volumes.join(volume), &self.snapshots.join(snapshot)).await?;
                }
            }
            SnapshotCall::Restore { snapshot, rate_mib } => {
                if let Some(volume) = element_text(answer, "volumeId") {
                    let dir = self.volumes.join(volume);
                    copy(&self.snapshots.join(snapshot), &dir).await?;
                    let load = Load {
                        since: Instant::now(),
                        bytes: bytes_in(&dir).await,
                        rate_mib: *rate_mib,
                    };
                    tracing::info!(%volume, bytes = load.bytes, rate_mib = ?rate_mib, "a volume made from a snapshot loads");
                    if let Ok(mut loads) = self.loads.lock() {
                        loads.insert(volume.to_owned(), load);
                    }
                }
            }
            SnapshotCall::Delete { snapshot } => {
                let dir = self.snapshots.join(snapshot);
                if dir.exists() {
                    command::run("rm", &["-rf", &dir.display().to_string()]).await?;
                }
            }
        }
        Ok(())
    }
}

impl Proxy {
    /// `DescribeVolumeStatus`: every asked volume is `ok`; one made from a
    /// snapshot says how far its load got.
    fn volume_status(&self, volumes: &[String]) -> Response {
        let now = Instant::now();
        let loads = self.loads.lock().map(|l| l.clone()).unwrap_or_default();
        let items: String = volumes
            .iter()
            .map(|volume| volume_status_item(volume, loads.get(volume), now))
            .collect();
        let xml = format!(
            "<DescribeVolumeStatusResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>ebisu-testcluster</requestId><volumeStatusSet>{items}</volumeStatusSet>\
             </DescribeVolumeStatusResponse>"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/xml"),
        );
        response(StatusCode::OK, headers, Bytes::from(xml))
    }
}

/// One volume's `item` in a `DescribeVolumeStatus` answer.
pub fn volume_status_item(volume: &str, load: Option<&Load>, now: Instant) -> String {
    let Some(load) = load else {
        return format!(
            "<item><volumeId>{volume}</volumeId><volumeStatus><status>ok</status>\
             <details/></volumeStatus><eventsSet/><actionsSet/></item>"
        );
    };
    let (percent, left) = load.progress(now);
    let state = if percent < 100 {
        "initializing"
    } else {
        "completed"
    };
    let (kind, estimate) = match load.rate_mib {
        Some(_) => (
            "provisioned-rate",
            format!("<estimatedTimeToCompleteInSeconds>{left}</estimatedTimeToCompleteInSeconds>"),
        ),
        None => ("default", String::new()),
    };
    format!(
        "<item><volumeId>{volume}</volumeId><volumeStatus><status>ok</status><details>\
         <item><name>initialization-state</name><status>{state}</status></item></details>\
         </volumeStatus><initializationStatusDetails><initializationType>{kind}</initializationType>\
         <progress>{percent}</progress>{estimate}</initializationStatusDetails>\
         <eventsSet/><actionsSet/></item>"
    )
}

/// The volumes a `DescribeVolumeStatus` call asks about (`VolumeId.N`).
pub fn volume_status_call(body: &[u8]) -> Option<Vec<String>> {
    let mut action = None;
    let mut volumes = Vec::new();
    for (key, value) in form_urlencoded::parse(body) {
        if key == "Action" {
            action = Some(value.into_owned());
        } else if key.starts_with("VolumeId.") {
            volumes.push(value.into_owned());
        }
    }
    (action.as_deref() == Some("DescribeVolumeStatus")).then_some(volumes)
}

/// The bytes a directory holds on disk (holes not counted, as a snapshot
/// keeps only written blocks).
async fn bytes_in(dir: &Path) -> u64 {
    let Ok(out) = command::run("du", &["-s", "-B1", &dir.display().to_string()]).await else {
        return 0;
    };
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Copies a directory with owners, modes and holes (a volume never used
/// has no directory: its snapshot is empty).
async fn copy(from: &Path, to: &Path) -> Result<(), command::CommandError> {
    if !from.is_dir() {
        return Ok(());
    }
    command::run(
        "cp",
        &[
            "-a",
            "--sparse=always",
            &from.display().to_string(),
            &to.display().to_string(),
        ],
    )
    .await
    .map(|_| ())
}

/// Stops every process that has `dir` mounted (the pod using the volume),
/// so that its copy is one instant of it.
async fn freeze(dir: &Path) -> Vec<u32> {
    let pids = users_of(dir);
    signal(&pids, "-STOP").await;
    pids
}

async fn thaw(pids: &[u32]) {
    signal(pids, "-CONT").await;
}

/// One `kill` for all, so that they stop at (nearly) one instant.
async fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut args = vec![signal];
    args.extend(pids.iter().map(String::as_str));
    command::run_quiet("kill", &args).await;
}

/// The processes whose mount namespace has `dir` bind-mounted.
fn users_of(dir: &Path) -> Vec<u32> {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .is_ok_and(|info| mounts(&info, name))
        })
        .collect()
}

/// Whether a mountinfo table has a bind mount of the volume directory
/// `name` (its root, the fourth field, ends in `/volumes/<name>`).
fn mounts(mountinfo: &str, name: &str) -> bool {
    let suffix = format!("/volumes/{name}");
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(3))
        .any(|root| root.ends_with(&suffix))
}

/// An EC2 call that makes, uses or removes a snapshot's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotCall {
    /// `CreateSnapshot` of a volume: its content is copied.
    Create {
        /// The volume.
        volume: String,
    },
    /// `CreateVolume` with a `SnapshotId`: the new volume starts with the
    /// snapshot's content.
    Restore {
        /// The snapshot.
        snapshot: String,
        /// Its `VolumeInitializationRate`, MiB/s.
        rate_mib: Option<u64>,
    },
    /// `DeleteSnapshot`: the content goes too.
    Delete {
        /// The snapshot.
        snapshot: String,
    },
}

/// The snapshot call a request body (`Action=...&...`) makes, if any.
pub fn snapshot_call(body: &[u8]) -> Option<SnapshotCall> {
    let mut action = None;
    let mut volume = None;
    let mut snapshot = None;
    let mut rate_mib = None;
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "Action" => action = Some(value.into_owned()),
            "VolumeId" => volume = Some(value.into_owned()),
            "SnapshotId" => snapshot = Some(value.into_owned()),
            "VolumeInitializationRate" => rate_mib = value.parse().ok(),
            _ => {}
        }
    }
    match action.as_deref()? {
        "CreateSnapshot" => Some(SnapshotCall::Create { volume: volume? }),
        "CreateVolume" => Some(SnapshotCall::Restore {
            snapshot: snapshot?,
            rate_mib,
        }),
        "DeleteSnapshot" => Some(SnapshotCall::Delete {
            snapshot: snapshot?,
        }),
        _ => None,
    }
}

/// The text of the first `<tag>` element in an EC2 answer (`snapshotId`,
/// `volumeId`).
pub fn element_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calls_that_touch_content_are_recognised() {
        assert_eq!(
            snapshot_call(b"Action=CreateSnapshot&Version=2016-11-15&VolumeId=vol-0abc"),
            Some(SnapshotCall::Create {
                volume: "vol-0abc".to_owned()
            })
        );
        assert_eq!(
            snapshot_call(
                b"Action=CreateVolume&AvailabilityZone=us-east-1a&SnapshotId=snap-1&Size=10"
            ),
            Some(SnapshotCall::Restore {
                snapshot: "snap-1".to_owned(),
                rate_mib: None
            })
        );
        assert_eq!(
            snapshot_call(b"Action=CreateVolume&SnapshotId=snap-1&VolumeInitializationRate=200"),
            Some(SnapshotCall::Restore {
                snapshot: "snap-1".to_owned(),
                rate_mib: Some(200)
            })
        );
        assert_eq!(
            snapshot_call(b"Action=CreateVolume&AvailabilityZone=us-east-1a&Size=10"),
            None,
            "an empty volume has no content to bring"
        );
        assert_eq!(
            snapshot_call(b"Action=DeleteSnapshot&SnapshotId=snap-1"),
            Some(SnapshotCall::Delete {
                snapshot: "snap-1".to_owned()
            })
        );
        assert_eq!(snapshot_call(b"Action=DescribeVolumes"), None);
        assert_eq!(snapshot_call(b"not a form"), None);
    }

    #[test]
    fn a_load_goes_at_its_rate_and_says_so() {
        let since = Instant::now();
        let load = Load {
            since,
            bytes: 100 << 20,
            rate_mib: Some(10),
        };
        let at = |secs| since + std::time::Duration::from_secs(secs);
        assert_eq!(load.progress(at(0)), (0, 10));
        assert_eq!(load.progress(at(4)), (40, 6));
        assert_eq!(load.progress(at(10)), (100, 0));
        let default = Load {
            rate_mib: None,
            ..load
        };
        assert_eq!(
            default.progress(at(40)),
            (40, 60),
            "{DEFAULT_RATE_MIB} MiB/s"
        );

        let item = volume_status_item("vol-1", Some(&load), at(4));
        assert!(item.contains("<status>initializing</status>"), "{item}");
        assert!(item.contains("<initializationType>provisioned-rate</initializationType>"));
        assert!(item.contains("<progress>40</progress>"));
        assert!(
            item.contains("<estimatedTimeToCompleteInSeconds>6</estimatedTimeToCompleteInSeconds>")
        );
        let done = volume_status_item("vol-1", Some(&default), at(100));
        assert!(done.contains("<progress>100</progress>") && !done.contains("estimated"));
        assert!(!volume_status_item("vol-2", None, at(1)).contains("initialization"));
        assert_eq!(
            volume_status_call(b"Action=DescribeVolumeStatus&VolumeId.1=vol-1&VolumeId.2=vol-2"),
            Some(vec!["vol-1".to_owned(), "vol-2".to_owned()])
        );
        assert_eq!(
            volume_status_call(b"Action=DescribeVolumes&VolumeId.1=vol-1"),
            None
        );
    }

    #[test]
    fn a_volume_is_found_among_the_mounts() {
        let info = "36 35 98:0 / / rw - ext4 /dev/vda rw\n\
            40 36 98:0 /tmp/ebisu-testcluster/volumes/vol-0abc /var/lib/mysql rw - ext4 /dev/vda rw\n";
        assert!(mounts(info, "vol-0abc"));
        assert!(!mounts(info, "vol-0ab"));
        assert!(!mounts(info, "vol-0def"));
    }

    #[test]
    fn ids_are_read_from_the_answer() {
        let answer = "<CreateSnapshotResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
            <requestId>r</requestId><snapshotId>snap-12345</snapshotId>\
            <volumeId>vol-0abc</volumeId></CreateSnapshotResponse>";
        assert_eq!(element_text(answer, "snapshotId"), Some("snap-12345"));
        assert_eq!(element_text(answer, "volumeId"), Some("vol-0abc"));
        assert_eq!(element_text(answer, "ownerId"), None);
    }
}
