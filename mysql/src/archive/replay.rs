//! Which archived transactions bring a backup to a point, decided over
//! the manifests alone ([`plan`]), and whether one transaction is replayed
//! ([`wanted`]). A plan fails closed: a target the backup is already past,
//! one past the archive's end, one across a gap, or an archive that holds
//! two histories is refused, saying which.

use std::collections::BTreeMap;
use std::fmt;

use super::Manifest;
use super::runs::{Runs, domain_stream};
use crate::binlog::{self, Transaction};
use crate::{Flavor, GtidSet, MariaDbGtidPos, MySqlGtidSet};

/// The point a restore stops at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every transaction committed at or before this time (microseconds
    /// since the epoch), in the archive's order, and none after the first
    /// one committed later. MariaDB records whole seconds.
    Time(i64),
    /// Exactly these transactions.
    Gtids(GtidSet),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Time(us) => f.write_str(&time(*us)),
            Self::Gtids(set) => write!(f, "GTID set {set}"),
        }
    }
}

/// A time in microseconds since the epoch, as RFC 3339.
pub fn time(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(|_| format!("{us} µs"), |t| t.to_string())
}

/// A manifest as listed, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The manifest's object key.
    pub key: String,
    /// What it says.
    pub manifest: Manifest,
}

/// One segment to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSegment {
    /// The bytes' object key.
    pub data_key: String,
    /// Where it starts in its file (0: it holds the file's head).
    pub start: u64,
    /// Its SHA-256, hex, as the manifest says.
    pub sha256: String,
}

/// One archived file's segments to read, its head first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// The file's name in the archive.
    pub file_key: String,
    /// Its segments by offset; the first starts at 0.
    pub segments: Vec<PlannedSegment>,
}

/// What to replay on a backup to reach the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The files, in the order their transactions committed.
    pub files: Vec<PlannedFile>,
    /// The transactions the server must hold after the replay...
    pub at_least: Runs,
    /// ...and the most it may hold (a time target's cut falls inside a
    /// segment, found only by reading it).
    pub at_most: Runs,
}

impl Plan {
    /// Whether a server holding `reached` is where the plan leads.
    pub fn reached(&self, reached: &GtidSet) -> Result<(), String> {
        let reached = Runs::of_gtids(reached);
        let lacking = self.at_least.minus(&reached);
        if !lacking.is_empty() {
            return Err(format!(
                "the replay ended without transactions the archive holds before the target: {lacking}"
            ));
        }
        let beyond = reached.minus(&self.at_most);
        if !beyond.is_empty() {
            return Err(format!(
                "the server holds transactions past the target: {beyond}"
            ));
        }
        Ok(())
    }
}

/// Why a restore to a point is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The backup already holds transactions the target does not.
    BeforeBackup {
        /// What the backup holds beyond the target.
        beyond: String,
    },
    /// The target lies past what the archive holds.
    PastEnd {
        /// The archive's last commit time, if it holds any transaction.
        last: Option<i64>,
        /// What the target needs that nothing archived holds.
        missing: Option<String>,
    },
    /// Transactions between the backup and the target are not archived.
    Gap {
        /// They.
        missing: String,
    },
    /// Two segments hold the same transactions: two histories.
    Forked {
        /// The transactions held twice.
        twice: String,
        /// The files holding them.
        files: (String, String),
    },
    /// A manifest cannot be understood, or a file's head is missing.
    Unreadable {
        /// The object.
        key: String,
        /// Why.
        why: String,
    },
}

impl Refusal {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BeforeBackup { .. } => "TargetBeforeBackup",
            Self::PastEnd { .. } => "TargetPastArchive",
            Self::Gap { .. } => "ArchiveGap",
            Self::Forked { .. } => "ArchiveForked",
            Self::Unreadable { .. } => "ArchiveUnreadable",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BeforeBackup { beyond } => write!(
                f,
                "the target is before the backup, which holds transactions the target does not ({beyond}): restore from an earlier backup"
            ),
            Self::PastEnd {
                last: Some(last),
                missing,
            } => write!(
                f,
                "the target is past the archive's end (its last transaction committed at {}{}): choose an earlier point, or wait until the archive holds it",
                time(*last),
                missing
                    .as_ref()
                    .map(|m| format!("; nothing archived holds {m}"))
                    .unwrap_or_default()
            ),
            Self::PastEnd { last: None, .. } => write!(
                f,
                "the archive holds no transaction: there is nothing to replay to the target; restore the backup itself"
            ),
            Self::Gap { missing } => write!(
                f,
                "the archive lacks transactions between the backup and the target ({missing}), so the target cannot be reached exactly: choose a point before them, or a backup taken after them"
            ),
            Self::Forked { twice, files } => write!(
                f,
                "the archive holds two histories: transactions {twice} are in both {} and {}; restore from an archive with one history (a restored cluster must archive under its own prefix)",
                files.0, files.1
            ),
            Self::Unreadable { key, why } => write!(f, "archive object {key}: {why}"),
        }
    }
}

/// What a segment holds, with its manifest.
struct Segment<'a> {
    listed: &'a Listed,
    holds: Runs,
}

/// What a segment's manifest says it holds.
fn holds(flavor: Flavor, listed: &Listed) -> Result<Runs, Refusal> {
    manifest_runs(flavor, &listed.manifest).map_err(|why| Refusal::Unreadable {
        key: listed.key.clone(),
        why,
    })
}

/// Exactly the transactions a segment holds, from its manifest (MariaDB:
/// each domain's first to last, consecutive there); why not when the
/// manifest cannot say.
pub fn manifest_runs(flavor: Flavor, m: &Manifest) -> Result<Runs, String> {
    let Some(gtids) = m.gtids.as_deref().filter(|_| m.transactions > 0) else {
        return Ok(Runs::new());
    };
    match flavor {
        Flavor::MySql80 | Flavor::MySql84 => MySqlGtidSet::parse(gtids)
            .map(|set| Runs::of_mysql(&set))
            .map_err(|e| e.to_string()),
        Flavor::MariaDb => {
            let lasts = MariaDbGtidPos::parse(gtids).map_err(|e| e.to_string())?;
            let firsts = m
                .firsts
                .as_deref()
                .map(MariaDbGtidPos::parse)
                .transpose()
                .map_err(|e| e.to_string())?;
            let mut runs = Runs::new();
            let single = lasts.iter().count() == 1;
            for last in lasts.iter() {
                let first = match firsts.as_ref().and_then(|f| f.get(last.domain_id)) {
                    Some(first) => first.seq_no,
                    // One domain: its transactions are consecutive.
                    None if single => (last.seq_no + 1).saturating_sub(m.transactions),
                    None => {
                        return Err("it names no first transaction for each domain".to_owned());
                    }
                };
                runs.add(&domain_stream(last.domain_id), first, last.seq_no);
            }
            Ok(runs)
        }
    }
}

/// Decides what to replay on a backup holding `backup` to reach `target`,
/// from the archive's manifests.
pub fn plan(
    flavor: Flavor,
    backup: &GtidSet,
    archive: &[Listed],
    target: &Target,
) -> Result<Plan, Refusal> {
    let segments: Vec<Segment<'_>> = archive
        .iter()
        .map(|listed| {
            Ok(Segment {
                listed,
                holds: holds(flavor, listed)?,
            })
        })
        .collect::<Result<_, Refusal>>()?;
    refuse_forks(&segments)?;
    let from = Runs::of_gtids(backup);
    let with_transactions = || segments.iter().filter(|s| !s.holds.is_empty());
    let (chosen, at_least, at_most) = match target {
        Target::Gtids(set) => {
            let to = Runs::of_gtids(set);
            let beyond = from.minus(&to);
            if !beyond.is_empty() {
                return Err(Refusal::BeforeBackup {
                    beyond: beyond.to_string(),
                });
            }
            let needed = to.minus(&from);
            let mut chosen: Vec<&Segment<'_>> = with_transactions()
                .filter(|s| !s.holds.overlap(&needed).is_empty())
                .collect();
            let covered = chosen.iter().fold(Runs::new(), |u, s| u.union(&s.holds));
            let missing = needed.minus(&covered);
            if !missing.is_empty() {
                let archived = with_transactions().fold(Runs::new(), |u, s| u.union(&s.holds));
                let past_end = missing.iter().all(|(stream, runs)| {
                    runs.first()
                        .is_some_and(|&(first, _)| archived.last(stream).is_none_or(|l| first > l))
                });
                return Err(if past_end {
                    Refusal::PastEnd {
                        last: with_transactions()
                            .filter_map(|s| s.listed.manifest.last_us)
                            .max(),
                        missing: Some(missing.to_string()),
                    }
                } else {
                    Refusal::Gap {
                        missing: missing.to_string(),
                    }
                });
            }
            chosen.sort_by_key(|s| order(s.listed));
            (chosen, to.clone(), to)
        }
        Target::Time(at) => {
            let at = *at;
            let Some(end) = with_transactions()
                .filter_map(|s| s.listed.manifest.last_us)
                .max()
            else {
                return Err(Refusal::PastEnd {
                    last: None,
                    missing: None,
                });
            };
            if at > end {
                return Err(Refusal::PastEnd {
                    last: Some(end),
                    missing: None,
                });
            }
            let begun = |s: &Segment<'_>| s.listed.manifest.first_us.is_some_and(|f| f <= at);
            // A hole before the first segment begun after the target may
            // hold transactions at or before it: nobody can tell.
            let all = with_transactions().fold(from.clone(), |u, s| u.union(&s.holds));
            let mut limits: BTreeMap<&str, u64> = BTreeMap::new();
            for s in with_transactions().filter(|s| !begun(s)) {
                for (stream, runs) in s.holds.iter() {
                    if let Some(&(first, _)) = runs.first() {
                        let limit = limits.entry(stream).or_insert(first);
                        *limit = (*limit).min(first);
                    }
                }
            }
            let mut gap = Runs::new();
            for (stream, runs) in all.holes().iter() {
                for &(first, last) in runs {
                    if limits.get(stream).is_none_or(|&limit| first < limit) {
                        gap.add(stream, first, last);
                    }
                }
            }
            // What an archiving server held by the target all committed by
            // then, so the backup or the archive must hold it: a segment
            // missing at the end of a server's range (the old primary's
            // last, after a failover) leaves no hole to see.
            for s in &segments {
                let m = &s.listed.manifest;
                if let (Some(held), Some(read)) = (m.held.as_deref(), m.held_at_us)
                    && read <= at
                {
                    let held = GtidSet::parse(flavor, held).map_err(|e| Refusal::Unreadable {
                        key: s.listed.key.clone(),
                        why: e.to_string(),
                    })?;
                    gap = gap.union(&Runs::of_gtids(&held).minus(&all));
                }
            }
            if !gap.is_empty() {
                return Err(Refusal::Gap {
                    missing: gap.to_string(),
                });
            }
            let mut chosen: Vec<&Segment<'_>> = with_transactions()
                .filter(|s| begun(s) && !from.contains(&s.holds))
                .collect();
            // In the archive's order: the cut is a prefix of it.
            chosen.sort_by_key(|s| order(s.listed));
            let mut at_least = from.clone();
            for s in &chosen {
                if s.listed.manifest.last_us.is_some_and(|l| l <= at) {
                    at_least = at_least.union(&s.holds);
                } else {
                    break;
                }
            }
            let at_most = chosen.iter().fold(from, |u, s| u.union(&s.holds));
            (chosen, at_least, at_most)
        }
    };
    Ok(Plan {
        files: files(archive, &chosen)?,
        at_least,
        at_most,
    })
}

/// The archive's order: by first commit, then file and offset.
fn order(listed: &Listed) -> (i64, u32, u32, u64) {
    let m = &listed.manifest;
    (
        m.first_us.unwrap_or(i64::MAX),
        m.created,
        m.server_id,
        m.start,
    )
}

/// Two segments that hold one transaction: two histories under one prefix
/// (one archiver never uploads a transaction twice).
fn refuse_forks(segments: &[Segment<'_>]) -> Result<(), Refusal> {
    let mut seen: Vec<&Segment<'_>> = Vec::new();
    for s in segments.iter().filter(|s| !s.holds.is_empty()) {
        if let Some(other) = seen.iter().find(|o| !o.holds.overlap(&s.holds).is_empty()) {
            return Err(Refusal::Forked {
                twice: other.holds.overlap(&s.holds).to_string(),
                files: (other.listed.key.clone(), s.listed.key.clone()),
            });
        }
        seen.push(s);
    }
    Ok(())
}

/// The chosen segments grouped by file, each file with its head, in the
/// order of the chosen segments.
fn files(archive: &[Listed], chosen: &[&Segment<'_>]) -> Result<Vec<PlannedFile>, Refusal> {
    let planned = |listed: &Listed| -> Result<PlannedSegment, Refusal> {
        Ok(PlannedSegment {
            data_key: super::data_key(&listed.key).ok_or_else(|| Refusal::Unreadable {
                key: listed.key.clone(),
                why: "it is not a manifest's key".to_owned(),
            })?,
            start: listed.manifest.start,
            sha256: listed.manifest.sha256.clone(),
        })
    };
    let mut files: Vec<PlannedFile> = Vec::new();
    for s in chosen {
        let key = s.listed.manifest.file_key();
        let index = match files.iter().position(|f| f.file_key == key) {
            Some(index) => index,
            None => {
                let head = archive
                    .iter()
                    .find(|l| l.manifest.file_key() == key && l.manifest.start == 0)
                    .ok_or_else(|| Refusal::Unreadable {
                        key: s.listed.key.clone(),
                        why: format!(
                            "the head of file {key} (its segment at offset 0, with its format description) is not in the archive"
                        ),
                    })?;
                files.push(PlannedFile {
                    file_key: key,
                    segments: vec![planned(head)?],
                });
                files.len() - 1
            }
        };
        let segment = planned(s.listed)?;
        let file = &mut files[index];
        if !file.segments.iter().any(|p| p.start == segment.start) {
            file.segments.push(segment);
            file.segments.sort_by_key(|p| p.start);
        }
    }
    Ok(files)
}

/// What to do with one archived transaction during a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Replay it.
    Apply,
    /// The server holds it, or the target leaves it out.
    Skip,
    /// It committed after the target time: replay nothing more.
    Stop,
}

/// Whether to replay `transaction` on a server holding `executed`.
pub fn wanted(target: &Target, executed: &GtidSet, transaction: &Transaction) -> Want {
    let mariadb = matches!(executed, GtidSet::MariaDb(_));
    let gtid = binlog::gtid_set(std::slice::from_ref(transaction), mariadb);
    match target {
        Target::Time(at) if transaction.committed_us > *at => Want::Stop,
        _ if executed.contains(&gtid).unwrap_or(false) => Want::Skip,
        Target::Gtids(set) if !set.contains(&gtid).unwrap_or(false) => Want::Skip,
        _ => Want::Apply,
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
