//! Purging the server's binary logs on the operator's word (`POST
//! /binlogs/purge`): the server's own expiry is off, so a file goes only
//! when it is old enough and everything that may still need it (the
//! archive, every instance) holds its transactions ([`first_kept`], pure).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use axum::{Json, extract::State, response::Response};
use ebisu_api::agent::{BinlogPurge, BinlogPurged};
use ebisu_mysql::{GtidSet, binlog};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncReadExt;
use tracing::info;

use super::Shared;

/// How much of a file's start is read for the GTIDs before it, first...
const HEAD_FIRST_LOOK: u64 = 64 << 10;
/// ...and when that cut the list of them short.
const HEAD_LOOK: u64 = 1 << 20;

/// Why a purge could not be decided or done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be asked, or refused the purge.
    #[error("failed to {action}: {why}")]
    Server {
        /// What was tried.
        action: &'static str,
        /// The server's error.
        why: String,
    },
    /// A holder's GTID set is not in the server's notation.
    #[error("failed to read the GTID set {set:?}: {why}")]
    Holder {
        /// The set as given.
        set: String,
        /// Why it does not parse.
        why: String,
    },
}

/// One binary log file as the purge sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    /// Its name.
    pub name: String,
    /// The GTIDs its server wrote before it (`None` when unreadable).
    pub preceding: Option<GtidSet>,
    /// Seconds since its last write.
    pub age_seconds: u64,
}

/// The index of the first file to keep (the files before it go): file `i`
/// may go when a later file exists (the server writes to the last), it
/// was last written at least `expire_seconds` ago, and every set in
/// `held_by` holds the GTIDs before file `i + 1`, which is everything file
/// `i` and the files before it hold. Files go oldest first: the first one
/// that must stay keeps every later one.
pub fn first_kept(files: &[FileFacts], held_by: &[GtidSet], expire_seconds: u64) -> usize {
    let mut kept = 0;
    while let [file, next, ..] = &files[kept..] {
        let held = next.preceding.as_ref().is_some_and(|before_next| {
            held_by
                .iter()
                .all(|h| h.contains(before_next).unwrap_or(false))
        });
        if file.age_seconds < expire_seconds || !held {
            break;
        }
        kept += 1;
    }
    kept
}

/// `POST /binlogs/purge`: purges what [`first_kept`] allows.
pub async fn request(
    State(shared): State<Arc<Shared>>,
    Json(order): Json<BinlogPurge>,
) -> Response {
    super::answer(purge(&shared, &order).await, "purging the binary logs")
}

async fn purge(shared: &Shared, order: &BinlogPurge) -> Result<BinlogPurged, Error> {
    let server = |action: &'static str| {
        move |e: mysql_async::Error| Error::Server {
            action,
            why: e.to_string(),
        }
    };
    let (mut conn, flavor) = shared
        .root_with_flavor()
        .await
        .map_err(|(action, why)| Error::Server { action, why })?;
    let held_by = order
        .held_by
        .iter()
        .map(|set| {
            GtidSet::parse(flavor, set).map_err(|e| Error::Holder {
                set: set.clone(),
                why: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let basename: Option<String> = conn
        .query_first("SELECT @@GLOBAL.log_bin_basename")
        .await
        .map_err(server("read log_bin_basename"))?;
    let dir = basename
        .as_deref()
        .and_then(|b| Path::new(b).parent())
        .map_or_else(|| shared.config.data_dir.clone(), Path::to_path_buf);
    let names: Vec<String> = conn
        .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
            row.get::<String, _>(0).unwrap_or_default()
        })
        .await
        .map_err(server("list the binary logs"))?;
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        files.push(FileFacts {
            age_seconds: age(&dir.join(&name)).await,
            name,
            preceding: None,
        });
    }
    // Only a file old enough may go, and only the next file's head says
    // whether it may: heads are read for those alone.
    let old_enough = files
        .iter()
        .take_while(|f| f.age_seconds >= order.expire_seconds)
        .count();
    for file in files.iter_mut().take(old_enough + 1).skip(1) {
        file.preceding = preceding(&dir.join(&file.name)).await;
    }
    let kept = first_kept(&files, &held_by, order.expire_seconds);
    let purged: Vec<String> = files[..kept].iter().map(|f| f.name.clone()).collect();
    if let Some(first_kept) = files.get(kept).filter(|_| kept > 0) {
        // The name comes from the server's own list; quoted all the same.
        let name = first_kept.name.replace('\\', "\\\\").replace('\'', "\\'");
        conn.query_drop(format!("PURGE BINARY LOGS TO '{name}'"))
            .await
            .map_err(server("purge the binary logs"))?;
        info!(files = ?purged, "purged binary logs every instance and the archive hold");
    }
    Ok(BinlogPurged {
        purged,
        kept: files.len() - kept,
    })
}

/// Seconds since the file's last write (0 when unknown: it stays).
async fn age(path: &Path) -> u64 {
    tokio::fs::metadata(path)
        .await
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .map_or(0, |age| age.as_secs())
}

/// The GTIDs before the file, from its first events (`None` when it
/// cannot be read: it stays, with every later file). The first 64 KiB
/// hold them unless the server had many sources; then the first MiB.
async fn preceding(path: &Path) -> Option<GtidSet> {
    for look in [HEAD_FIRST_LOOK, HEAD_LOOK] {
        let mut head = Vec::new();
        let file = tokio::fs::File::open(path).await.ok()?;
        file.take(look).read_to_end(&mut head).await.ok()?;
        if let Ok(before) = binlog::preceding(&head) {
            return before;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_mysql::Flavor;

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn mysql(set: &str) -> GtidSet {
        GtidSet::parse(Flavor::MySql84, set).unwrap()
    }

    /// Files whose preceding sets are `uuid:1-<n>` (0: empty), each `age`.
    fn files(before: &[(u64, u64)]) -> Vec<FileFacts> {
        before
            .iter()
            .enumerate()
            .map(|(i, &(n, age))| FileFacts {
                name: format!("binlog.{:06}", i + 1),
                preceding: Some(if n == 0 {
                    GtidSet::empty(Flavor::MySql84)
                } else {
                    mysql(&format!("{UUID}:1-{n}"))
                }),
                age_seconds: age,
            })
            .collect()
    }

    #[test]
    fn files_held_everywhere_and_old_enough_go_oldest_first() {
        let f = files(&[(0, 100), (10, 100), (20, 100), (30, 0)]);
        let all = mysql(&format!("{UUID}:1-30"));
        assert_eq!(first_kept(&f, &[all.clone(), all.clone()], 50), 3);
        // The last file is never purged, however old and held.
        let old = files(&[(0, 100), (10, 100)]);
        assert_eq!(first_kept(&old, &[mysql(&format!("{UUID}:1-99"))], 0), 1);
        assert_eq!(first_kept(&old[..1], &[], 0), 0);
        assert_eq!(first_kept(&[], &[], 0), 0);
    }

    #[test]
    fn a_file_a_holder_lacks_stays_with_every_later_one() {
        let f = files(&[(0, 100), (10, 100), (20, 100), (30, 0)]);
        // The archive holds through 15: the second file (11-20) stays.
        let archive = mysql(&format!("{UUID}:1-15"));
        let replica = mysql(&format!("{UUID}:1-30"));
        assert_eq!(first_kept(&f, &[archive, replica.clone()], 0), 1);
        // A replica behind at 5 keeps the first file too.
        assert_eq!(
            first_kept(&f, &[replica, mysql(&format!("{UUID}:1-5"))], 0),
            0
        );
        // A hole in a holder's set counts as lacking.
        let holey = mysql(&format!("{UUID}:1-4:6-30"));
        assert_eq!(first_kept(&f, &[holey], 0), 0);
        // A holder of another flavor holds nothing.
        let mariadb = GtidSet::parse(Flavor::MariaDb, "0-1-100").unwrap();
        assert_eq!(first_kept(&f, &[mariadb], 0), 0);
    }

    #[test]
    fn a_young_or_unreadable_file_stays_with_every_later_one() {
        let all = mysql(&format!("{UUID}:1-30"));
        let young = files(&[(0, 100), (10, 10), (20, 100), (30, 0)]);
        assert_eq!(first_kept(&young, std::slice::from_ref(&all), 50), 1);
        let mut unreadable = files(&[(0, 100), (10, 100), (20, 100), (30, 0)]);
        unreadable[2].preceding = None;
        assert_eq!(first_kept(&unreadable, &[all], 0), 1);
    }

    #[test]
    fn mariadb_files_go_by_each_domains_position() {
        let file = |name: &str, before: &str| FileFacts {
            name: name.to_owned(),
            preceding: Some(if before.is_empty() {
                GtidSet::empty(Flavor::MariaDb)
            } else {
                GtidSet::parse(Flavor::MariaDb, before).unwrap()
            }),
            age_seconds: 1000,
        };
        let f = vec![
            file("mysql-bin.000001", ""),
            file("mysql-bin.000002", "0-1-10,1-1-5"),
            file("mysql-bin.000003", "0-2-20,1-1-9"),
        ];
        let at = |s: &str| GtidSet::parse(Flavor::MariaDb, s).unwrap();
        assert_eq!(first_kept(&f, &[at("0-2-20,1-1-9")], 0), 2);
        assert_eq!(first_kept(&f, &[at("0-2-20,1-1-8")], 0), 1);
        assert_eq!(first_kept(&f, &[at("0-2-20")], 0), 0);
    }
}
