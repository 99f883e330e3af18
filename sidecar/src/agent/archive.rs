//! The binary log archive: while the operator keeps assigning it (`POST
//! /archive`, renewed every reconcile), this agent uploads its server's
//! binary logs to S3 once a second, in segments that end on a transaction
//! boundary, each followed by its manifest (the transactions it holds, their
//! commit times, a SHA-256). The archive is indexed by GTID and by server
//! and file creation, never by a file name alone: an agent that takes over
//! reads every manifest and uploads only the transactions the archive
//! lacks, after the file's head (format description and preceding GTIDs),
//! so a switchover or failover leaves neither a gap nor a transaction
//! archived twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use ebisu_api::agent::{ArchiveAssignment, ArchiveProgress};
use ebisu_mysql::archive::{Manifest, file_key, replay::manifest_runs, runs::Runs, segment_keys};
use ebisu_mysql::{Flavor, GtidSet, binlog};
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Shared;
use ebisu_aws::archive as archive_store;

/// How often the archiver looks for new bytes.
const ROUND: Duration = Duration::from_secs(1);
/// The most one segment holds: a long file is uploaded in parts.
const MAX_SEGMENT: u64 = 64 << 20;
/// How much of a file's start is read for its head (format description,
/// preceding GTIDs, which grow with the number of sources).
const HEAD_LOOK: u64 = 1 << 20;

/// Why a round of archiving failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be asked.
    #[error("failed to read the server's binary log state: {0}")]
    Server(String),
    /// A binary log could not be read.
    #[error("failed to read binary log {file}: {why}")]
    File {
        /// The file.
        file: String,
        /// What went wrong.
        why: String,
    },
    /// S3 refused or failed a call.
    #[error("failed to {action} in S3: {why}")]
    S3 {
        /// What was tried.
        action: String,
        /// S3's error.
        why: String,
    },
}

fn s3<E: std::error::Error>(action: impl Into<String>) -> impl FnOnce(E) -> Error {
    let failed = archive_store::failed(action);
    move |error| Error::from(failed(error))
}

impl From<archive_store::Error> for Error {
    fn from(error: archive_store::Error) -> Self {
        Self::S3 {
            action: error.action,
            why: error.why,
        }
    }
}

/// The archive's shared state: the operator's assignment and the progress
/// it reads back.
#[derive(Debug, Default)]
pub struct Archive {
    assignment: Mutex<Option<(ArchiveAssignment, Instant)>>,
    progress: Mutex<ArchiveProgress>,
}

impl Archive {
    fn current(&self) -> Option<ArchiveAssignment> {
        let slot = self.assignment.lock().ok()?;
        let (assignment, until) = slot.as_ref()?;
        (Instant::now() < *until).then(|| assignment.clone())
    }

    /// Every transaction the archive holds, as this agent last read it.
    pub(super) fn archived(&self) -> Option<String> {
        self.progress().archived
    }

    fn progress(&self) -> ArchiveProgress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut ArchiveProgress)) {
        if let Ok(mut progress) = self.progress.lock() {
            change(&mut progress);
        }
    }
}

/// `POST /archive`: archive for the next `seconds`; answers the progress.
pub async fn assign(
    State(shared): State<Arc<Shared>>,
    Json(assignment): Json<ArchiveAssignment>,
) -> Response {
    let until = Instant::now() + Duration::from_secs(assignment.seconds);
    if let Ok(mut slot) = shared.archive.assignment.lock() {
        let new = slot
            .as_ref()
            .is_none_or(|(a, _)| a.bucket != assignment.bucket || a.prefix != assignment.prefix);
        if new {
            info!(bucket = %assignment.bucket, prefix = %assignment.prefix, "archiving the binary logs");
            // Another archive's progress says nothing about this one.
            shared.archive.update(|p| *p = ArchiveProgress::default());
        }
        *slot = Some((assignment, until));
    }
    Json(shared.archive.progress()).into_response()
}

/// Archives while assigned, until the process ends; a round that panics
/// (a TLS setup without CA certificates does, inside the AWS client) is
/// reported as the archive's error and archiving starts over.
pub async fn run(shared: Arc<Shared>) {
    use futures::FutureExt;
    loop {
        let stopped = std::panic::AssertUnwindSafe(archive(shared.clone()))
            .catch_unwind()
            .await;
        let why = match stopped {
            Ok(()) => continue,
            Err(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()),
        };
        warn!(%why, "the archiver stopped; starting over");
        shared
            .archive
            .update(|p| p.error = Some(format!("the archiver stopped: {why}")));
        tokio::time::sleep(ROUND * 10).await;
    }
}

async fn archive(shared: Arc<Shared>) {
    let mut client: Option<Client> = None;
    let mut session: Option<Session> = None;
    loop {
        tokio::time::sleep(ROUND).await;
        let Some(assignment) = shared.archive.current() else {
            if session.take().is_some() {
                info!("no longer assigned: archiving stops");
            }
            continue;
        };
        let client = match &client {
            Some(client) => client.clone(),
            None => client
                .insert(ebisu_aws::s3(
                    &ebisu_aws::config(ebisu_aws::archive::OPERATION_TIMEOUT).await,
                ))
                .clone(),
        };
        if session
            .as_ref()
            .is_some_and(|s| s.bucket != assignment.bucket || s.prefix != assignment.prefix)
        {
            session = None;
        }
        let outcome = match session.as_mut() {
            Some(session) => session.round(&shared, &client).await,
            None => match Session::start(&shared, &client, &assignment).await {
                Ok(started) => session.insert(started).round(&shared, &client).await,
                Err(error) => Err(error),
            },
        };
        match outcome {
            Ok(()) => shared.archive.update(|p| p.error = None),
            Err(error) => {
                let message = error.to_string();
                let new = shared.archive.progress().error.as_deref() != Some(message.as_str());
                if new {
                    warn!(%error, "archiving the binary logs");
                }
                // The session keeps what was uploaded: the next round goes
                // on from there.
                shared.archive.update(|p| p.error = Some(message));
            }
        }
    }
}

/// Where the archive stands for one of this server's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    /// Archived (or found archived elsewhere) up to here.
    end: u64,
    /// Its head (up to the first transaction) is in the archive.
    head_archived: bool,
}

/// Archiving to one bucket and prefix, from what the archive held when it
/// began.
struct Session {
    bucket: String,
    prefix: String,
    flavor: Flavor,
    server_id: u32,
    dir: PathBuf,
    archived: GtidSet,
    /// What came before the oldest file in the archive (by creation): the
    /// transactions the archive never needs.
    floor: Option<(u32, GtidSet)>,
    /// The server's oldest binary log and the GTIDs before it.
    oldest_preceding: Option<(String, GtidSet)>,
    /// Exactly the transactions the archive holds (a MariaDB position
    /// cannot show a hole).
    runs: Runs,
    files: HashMap<String, FileState>,
    /// Each of the server's files (by name) and when it was begun.
    created: HashMap<String, u32>,
    /// What the server held when this round began, and when that was read
    /// (microseconds): written into each manifest of the round.
    round_held: Option<(String, i64)>,
}

impl Session {
    async fn start(
        shared: &Shared,
        client: &Client,
        assignment: &ArchiveAssignment,
    ) -> Result<Self, Error> {
        let mut conn = shared
            .root_conn()
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        let flavor = shared
            .flavor(&mut conn)
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        let (server_id, basename): (u32, String) = conn
            .query_first("SELECT @@GLOBAL.server_id, @@GLOBAL.log_bin_basename")
            .await
            .map_err(|e| Error::Server(e.to_string()))?
            .ok_or_else(|| Error::Server("no server_id or log_bin_basename".to_owned()))?;
        let dir = Path::new(&basename)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| shared.config.data_dir.clone());
        let mut session = Self {
            bucket: assignment.bucket.clone(),
            prefix: assignment.prefix.trim_end_matches('/').to_owned(),
            flavor,
            server_id,
            dir,
            archived: GtidSet::empty(flavor),
            floor: None,
            oldest_preceding: None,
            runs: Runs::new(),
            files: HashMap::new(),
            created: HashMap::new(),
            round_held: None,
        };
        session.read_archive(shared, client).await?;
        Ok(session)
    }

    /// Reads every manifest: what the archive holds, and how far this
    /// server's own files got.
    async fn read_archive(&mut self, shared: &Shared, client: &Client) -> Result<(), Error> {
        let mut through = None;
        for listed in archive_store::manifests(client, &self.bucket, &self.prefix).await? {
            self.take(&listed.manifest);
            through = through.max(listed.manifest.last_us);
        }
        let archived = self.held().to_string();
        shared.archive.update(|p| {
            p.archived = Some(archived);
            p.archived_through_us = p.archived_through_us.max(through);
        });
        Ok(())
    }

    /// Counts a manifest's transactions as archived (and, for this
    /// server's own files, how far the file got).
    fn take(&mut self, manifest: &Manifest) {
        if let Ok(runs) = manifest_runs(self.flavor, manifest) {
            self.runs = self.runs.union(&runs);
        }
        if let Some(gtids) = &manifest.gtids
            && let Ok(set) = GtidSet::parse(self.flavor, gtids)
            && let Ok(union) = self.archived.union(&set)
        {
            self.archived = union;
        }
        if manifest.start == 0
            && self
                .floor
                .as_ref()
                .is_none_or(|(created, _)| manifest.created < *created)
        {
            let before = manifest
                .preceding
                .as_deref()
                .and_then(|p| GtidSet::parse(self.flavor, p).ok())
                .unwrap_or_else(|| GtidSet::empty(self.flavor));
            self.floor = Some((manifest.created, before));
        }
        if manifest.server_id == self.server_id {
            let key = file_key(manifest.server_id, manifest.created, &manifest.file);
            let state = self.files.entry(key).or_insert(FileState {
                end: 0,
                head_archived: false,
            });
            state.end = state.end.max(manifest.end);
            state.head_archived |= manifest.start == 0;
        }
    }

    /// One round: every byte of every binary log up to the server's
    /// current position that the archive lacks.
    async fn round(&mut self, shared: &Shared, client: &Client) -> Result<(), Error> {
        let mut conn = shared
            .root_conn()
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        let position: Option<mysql_async::Row> = conn
            .query_first(self.flavor.binlog_position_query())
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        let Some(position) = position else {
            return Err(Error::Server("the binary log is off".to_owned()));
        };
        let (Some(current), Some(current_end)) =
            (position.get::<String, _>(0), position.get::<u64, _>(1))
        else {
            return Err(Error::Server(
                "the binary log position has no file or offset".to_owned(),
            ));
        };
        let logs: Vec<(String, u64)> = conn
            .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
                (
                    row.get::<String, _>(0).unwrap_or_default(),
                    row.get::<u64, _>(1).unwrap_or_default(),
                )
            })
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        // Read after the position: every segment of this round holds only
        // transactions committed before the time taken once it is read.
        let held: Option<String> = conn
            .query_first(self.flavor.gtid_executed_query())
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        let read_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        self.round_held = held
            .and_then(|h| GtidSet::parse(self.flavor, &h).ok())
            .map(|h| (h.to_string(), read_at));
        drop(conn);
        // Before the uploads: what no file here holds any more is known
        // now (uploading these files cannot fill it), and a round of many
        // segments, or one failing against S3, would report it late.
        if let Some((oldest, _)) = logs.first() {
            self.look_for_gap(shared, oldest).await?;
        }
        for (file, size) in logs {
            let end = if file == current { current_end } else { size };
            self.archive_file(shared, client, &file, end).await?;
        }
        Ok(())
    }

    /// Reports what the archive lacks of the transactions before this
    /// server's oldest binary log: no file here holds them any more (a
    /// server purged them before they were archived), so this archiver can
    /// never fill the gap.
    async fn look_for_gap(&mut self, shared: &Shared, oldest: &str) -> Result<(), Error> {
        let before = match &self.oldest_preceding {
            Some((file, before)) if file == oldest => before.clone(),
            _ => {
                let head = read(&self.dir.join(oldest), 0, HEAD_LOOK).await?;
                let Some(before) = binlog::preceding(&head).map_err(|e| Error::File {
                    file: oldest.to_owned(),
                    why: e.to_string(),
                })?
                else {
                    return Ok(());
                };
                self.oldest_preceding = Some((oldest.to_owned(), before.clone()));
                before
            }
        };
        let floor = self
            .floor
            .as_ref()
            .map_or_else(Runs::new, |(_, floor)| Runs::of_gtids(floor));
        let missing = Runs::of_gtids(&before).minus(&self.runs.union(&floor));
        let gap = (!missing.is_empty()).then(|| (missing.to_string(), before.to_string()));
        if gap.is_some() && shared.archive.progress().gap.is_none() {
            warn!(gap = %missing, "the archive lacks transactions no binary log here holds any more");
        }
        shared.archive.update(|p| {
            (p.gap, p.gap_before) = gap.unzip();
        });
        Ok(())
    }

    async fn archive_file(
        &mut self,
        shared: &Shared,
        client: &Client,
        file: &str,
        end: u64,
    ) -> Result<(), Error> {
        let path = self.dir.join(file);
        let created = match self.created.get(file) {
            Some(created) => *created,
            None => {
                let start = read(&path, 0, end.min(512)).await?;
                let Some(Ok(description)) = binlog::events(&start, 0).next() else {
                    return Ok(()); // Not begun yet.
                };
                self.created.insert(file.to_owned(), description.timestamp);
                description.timestamp
            }
        };
        let key = file_key(self.server_id, created, file);
        let mut state = self.files.get(&key).copied().unwrap_or(FileState {
            end: 0,
            head_archived: false,
        });
        if state.end >= end {
            return Ok(());
        }
        let head = read(&path, 0, end.min(HEAD_LOOK)).await?;
        let transactions_in = |bytes: &[u8], from: u64| {
            binlog::transactions(bytes, from).map_err(|e| Error::File {
                file: file.to_owned(),
                why: e.to_string(),
            })
        };
        while state.end < end {
            let from = state.end;
            let capped = from + MAX_SEGMENT < end;
            let mut bytes = read(&path, from, end.min(from + MAX_SEGMENT)).await?;
            let mut whole = boundary(&bytes, from);
            let mut transactions = transactions_in(&bytes[..whole], from)?;
            if capped {
                // A piece ends where a transaction begins: the one the cap
                // cut goes whole with the next piece.
                match transactions.last() {
                    Some(last) if last.offset > from => {
                        whole = usize::try_from(last.offset - from).unwrap_or(whole);
                        transactions.pop();
                    }
                    _ => {
                        // One transaction larger than a piece: read it whole.
                        bytes = read(&path, from, end).await?;
                        whole = boundary(&bytes, from);
                        transactions = transactions_in(&bytes[..whole], from)?;
                    }
                }
            }
            if whole == 0 {
                return Err(Error::File {
                    file: file.to_owned(),
                    why: format!("no whole event between offsets {from} and {end}"),
                });
            }
            let bytes = &bytes[..whole];
            let until = from + whole as u64;
            let held = self.held();
            let runs = lacking_runs(
                &transactions,
                until,
                |set| held.contains(set).unwrap_or(false),
                self.flavor,
            );
            let Some(&(first_run, _)) = runs.first() else {
                // All of it is archived already (from another server's files).
                state.end = until;
                self.files.insert(key.clone(), state);
                continue;
            };
            let mut runs = runs;
            if !state.head_archived {
                // The head (format description, preceding GTIDs) goes first,
                // with the first run when nothing of the file was skipped.
                let head_end = if from == 0 {
                    transactions.first().map_or(until, |t| t.offset)
                } else {
                    first_transaction(&path, file).await?
                };
                if from == 0 && first_run <= head_end {
                    runs[0].0 = 0;
                } else {
                    let head = read(&path, 0, head_end).await?;
                    self.upload(shared, client, file, created, 0, &head, &head)
                        .await?;
                }
                state.head_archived = true;
            }
            for (start, end) in runs {
                let at = |offset: u64| usize::try_from(offset - from).unwrap_or(0);
                let segment = &bytes[at(start)..at(end)];
                self.upload(shared, client, file, created, start, segment, &head)
                    .await?;
            }
            state.end = until;
            self.files.insert(key.clone(), state);
        }
        Ok(())
    }

    /// What the server held before a file began that the file does not
    /// carry: the file's preceding GTIDs and, on MySQL, `gtid_purged`
    /// (transactions in no binary log of the server, such as those a clone
    /// brought, which the Previous_gtids event leaves out).
    async fn before_file(&self, shared: &Shared, head: &[u8]) -> Result<GtidSet, Error> {
        let preceding = binlog::preceding(head)
            .map_err(|e| Error::File {
                file: "head".to_owned(),
                why: e.to_string(),
            })?
            .unwrap_or_else(|| GtidSet::empty(self.flavor));
        if self.flavor == Flavor::MariaDb {
            return Ok(preceding);
        }
        let mut conn = shared
            .root_conn()
            .await
            .map_err(|e| Error::Server(e.to_string()))?;
        let purged: String = conn
            .query_first("SELECT @@GLOBAL.gtid_purged")
            .await
            .map_err(|e| Error::Server(e.to_string()))?
            .unwrap_or_default();
        let purged =
            GtidSet::parse(self.flavor, &purged).map_err(|e| Error::Server(e.to_string()))?;
        preceding
            .union(&purged)
            .map_err(|e| Error::Server(e.to_string()))
    }

    /// What a restore from the archive can reach: everything before its
    /// oldest file and every transaction in it.
    fn held(&self) -> GtidSet {
        match &self.floor {
            Some((_, floor)) => floor
                .union(&self.archived)
                .unwrap_or_else(|_| self.archived.clone()),
            None => self.archived.clone(),
        }
    }

    /// Uploads one segment, then its manifest, and counts it.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &mut self,
        shared: &Shared,
        client: &Client,
        file: &str,
        created: u32,
        start: u64,
        bytes: &[u8],
        head: &[u8],
    ) -> Result<(), Error> {
        let transactions = binlog::transactions(bytes, start).map_err(|e| Error::File {
            file: file.to_owned(),
            why: e.to_string(),
        })?;
        let mariadb = self.flavor == Flavor::MariaDb;
        let gtids = (!transactions.is_empty())
            .then(|| binlog::gtid_set(&transactions, mariadb).to_string());
        // MariaDB's set is a position (the last per domain): the first per
        // domain lets a restore see a missing transaction.
        let firsts = (mariadb && !transactions.is_empty()).then(|| {
            let firsts = transactions.iter().filter_map(|t| match t.gtid {
                binlog::Gtid::MariaDb(gtid) => Some(gtid),
                binlog::Gtid::MySql { .. } => None,
            });
            let mut by_domain: std::collections::BTreeMap<u32, ebisu_mysql::gtid::MariaDbGtid> =
                std::collections::BTreeMap::new();
            for gtid in firsts {
                by_domain.entry(gtid.domain_id).or_insert(gtid);
            }
            by_domain
                .values()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        let preceding = if start == 0 {
            Some(self.before_file(shared, head).await?.to_string())
        } else {
            None
        };
        let manifest = Manifest {
            server_id: self.server_id,
            file: file.to_owned(),
            created,
            start,
            end: start + bytes.len() as u64,
            preceding,
            gtids,
            firsts,
            transactions: transactions.len() as u64,
            first_us: transactions.first().map(|t| t.committed_us),
            last_us: transactions.last().map(|t| t.committed_us),
            sha256: archive_store::sha256_hex(bytes),
            held: self.round_held.as_ref().map(|(held, _)| held.clone()),
            held_at_us: self.round_held.as_ref().map(|(_, at)| *at),
        };
        let (data_key, manifest_key) = segment_keys(
            &self.prefix,
            &file_key(self.server_id, created, file),
            start,
        );
        client
            .put_object()
            .bucket(&self.bucket)
            .key(&data_key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(s3(format!("upload {data_key}")))?;
        let json =
            serde_json::to_vec(&manifest).map_err(s3(format!("write manifest {manifest_key}")))?;
        client
            .put_object()
            .bucket(&self.bucket)
            .key(&manifest_key)
            .content_type("application/json")
            .body(ByteStream::from(json))
            .send()
            .await
            .map_err(s3(format!("upload {manifest_key}")))?;
        self.take(&manifest);
        let archived = self.held().to_string();
        shared.archive.update(|p| {
            p.archived = Some(archived);
            p.archived_through_us = p.archived_through_us.max(manifest.last_us);
            p.segments += 1;
        });
        Ok(())
    }
}

/// The stretches of a file's bytes (up to `until`) that hold the
/// transactions the archive lacks, each from a lacking transaction up to
/// the next one it holds: uploading these archives nothing twice.
pub fn lacking_runs(
    transactions: &[binlog::Transaction],
    until: u64,
    holds: impl Fn(&GtidSet) -> bool,
    flavor: Flavor,
) -> Vec<(u64, u64)> {
    let mariadb = flavor == Flavor::MariaDb;
    let mut runs = Vec::new();
    let mut open: Option<u64> = None;
    for t in transactions {
        let held = holds(&binlog::gtid_set(std::slice::from_ref(t), mariadb));
        match (held, open) {
            (true, Some(start)) => {
                runs.push((start, t.offset));
                open = None;
            }
            (false, None) => open = Some(t.offset),
            _ => {}
        }
    }
    if let Some(start) = open {
        runs.push((start, until));
    }
    runs
}

/// The offset of a file's first transaction (its head ends there), or its
/// end so far when it has none.
async fn first_transaction(path: &Path, file: &str) -> Result<u64, Error> {
    let head = read(path, 0, HEAD_LOOK).await?;
    let whole = boundary(&head, 0);
    let transactions = binlog::transactions(&head[..whole], 0).map_err(|e| Error::File {
        file: file.to_owned(),
        why: e.to_string(),
    })?;
    Ok(transactions.first().map_or(whole as u64, |t| t.offset))
}

/// How many leading bytes of `bytes` (from `offset`) are whole events.
pub fn boundary(bytes: &[u8], offset: u64) -> usize {
    let mut end = if offset == 0 && bytes.starts_with(&binlog::MAGIC) {
        binlog::MAGIC.len()
    } else {
        0
    };
    for event in binlog::events(bytes, offset) {
        match event {
            Ok(event) => {
                end = usize::try_from(event.offset - offset).unwrap_or(0) + 19 + event.body.len();
            }
            Err(_) => break,
        }
    }
    end
}

/// Bytes `[from, to)` of a file (fewer if it is shorter).
async fn read(path: &Path, from: u64, to: u64) -> Result<Vec<u8>, Error> {
    let failed = |e: std::io::Error| Error::File {
        file: path.display().to_string(),
        why: e.to_string(),
    };
    let mut file = tokio::fs::File::open(path).await.map_err(failed)?;
    file.seek(std::io::SeekFrom::Start(from))
        .await
        .map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(to.saturating_sub(from))
        .read_to_end(&mut bytes)
        .await
        .map_err(failed)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_named_by_server_creation_and_offset() {
        assert_eq!(
            segment_keys(
                "shop/orders",
                &file_key(101, 1_700_000_000, "mysql-bin.000002"),
                4
            ),
            (
                "shop/orders/binlog/101-1700000000-mysql-bin.000002/00000000000000000004"
                    .to_owned(),
                "shop/orders/manifest/101-1700000000-mysql-bin.000002/00000000000000000004.json"
                    .to_owned()
            )
        );
    }

    #[test]
    fn only_the_transactions_the_archive_lacks_are_uploaded() {
        let at = |seq: u64| binlog::Transaction {
            gtid: binlog::Gtid::MariaDb(ebisu_mysql::gtid::MariaDbGtid {
                domain_id: 0,
                server_id: 1,
                seq_no: seq,
            }),
            committed_us: 0,
            offset: seq * 100,
        };
        let transactions: Vec<_> = (1..=6).map(at).collect();
        let archived = |seqs: &'static [u64]| {
            move |set: &GtidSet| seqs.iter().any(|s| set.to_string() == format!("0-1-{s}"))
        };
        assert_eq!(
            lacking_runs(&transactions, 700, archived(&[3, 4]), Flavor::MariaDb),
            [(100, 300), (500, 700)]
        );
        assert_eq!(
            lacking_runs(
                &transactions,
                700,
                archived(&[1, 2, 3, 4, 5, 6]),
                Flavor::MariaDb
            ),
            []
        );
        assert_eq!(
            lacking_runs(&transactions, 700, archived(&[]), Flavor::MariaDb),
            [(100, 700)]
        );
        assert_eq!(
            lacking_runs(&transactions, 700, archived(&[6]), Flavor::MariaDb),
            [(100, 600)],
            "what follows the last held transaction is not uploaded"
        );
    }

    #[test]
    fn a_stretch_is_cut_at_its_last_whole_event() {
        let event = |len: u32| {
            let mut e = vec![0u8; len as usize];
            e[9..13].copy_from_slice(&len.to_le_bytes());
            e
        };
        let mut file = binlog::MAGIC.to_vec();
        file.extend(event(30));
        file.extend(event(25));
        assert_eq!(boundary(&file, 0), 59);
        file.extend(&event(40)[..20]);
        assert_eq!(boundary(&file, 0), 59, "the partial event is left");
        assert_eq!(boundary(&file[4..], 4), 55);
        assert_eq!(boundary(&[], 0), 0);
    }
}
