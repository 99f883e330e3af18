//! Table checks on the operator's word (`POST /tables/check`): checksums,
//! and `CHECK TABLE` when asked, of a sample of the server's tables, all
//! taken at one GTID set. A restore being verified is compared with a
//! replica checked this way while its applier was held.

use std::sync::Arc;
use std::time::Duration;

use axum::{Json, extract::State, response::Response};
use ebisu_api::agent::{TableCheck, TableCheckRequest, TableName, TableSum};
use ebisu_mysql::{Flavor, GtidDifference, GtidSet, sql::quote_identifier};
use mysql_async::{Conn, prelude::Queryable};
use tracing::info;

use super::Shared;

/// How long a held replica waits for its archive to hold the set it stopped
/// at (the archive looks once a second, and the binary log no longer grows).
const ARCHIVE_WAIT: Duration = Duration::from_secs(30);

/// The user tables a sample is taken from, in name order.
const TABLES_QUERY: &str = "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
     WHERE TABLE_TYPE = 'BASE TABLE' \
     AND TABLE_SCHEMA NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema') \
     ORDER BY TABLE_SCHEMA, TABLE_NAME";

/// Why tables could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be asked.
    #[error("failed to {action}: {why}")]
    Server {
        /// What was tried.
        action: &'static str,
        /// The server's error.
        why: String,
    },
    /// The applier moved while it was held (something started it).
    #[error("failed to hold the applier: the GTID set moved from {before} to {after}")]
    Moved {
        /// The set when the checksums began.
        before: String,
        /// The set after them.
        after: String,
    },
    /// The server is not a replica whose applier runs cleanly: holding it
    /// could restart an applier stopped for a reason.
    #[error("failed to hold the applier: {0}")]
    NotHoldable(String),
    /// The archive did not come to hold the held set in time.
    #[error(
        "failed to see the archive hold {held} within {}s (it holds {archived:?})",
        ARCHIVE_WAIT.as_secs()
    )]
    NotArchived {
        /// The held set.
        held: String,
        /// What the archive held last.
        archived: Option<String>,
    },
}

fn server(action: &'static str) -> impl FnOnce(mysql_async::Error) -> Error {
    move |e| Error::Server {
        action,
        why: e.to_string(),
    }
}

/// Up to `n` of `tables` (in name order), spread evenly over them.
pub fn sample(tables: &[TableName], n: usize) -> Vec<TableName> {
    if tables.len() <= n {
        return tables.to_vec();
    }
    (0..n)
        .filter_map(|i| tables.get(i * tables.len() / n))
        .cloned()
        .collect()
}

/// `CHECK TABLE`'s verdict from its rows (`Msg_type`, `Msg_text`): `OK`
/// when its last status row says so and no row is an error, else every
/// message, joined.
pub fn check_verdict(rows: &[(String, String)]) -> String {
    let failed = rows
        .iter()
        .any(|(kind, _)| kind.eq_ignore_ascii_case("error"));
    let last_ok = rows
        .iter()
        .rev()
        .find(|(kind, _)| kind.eq_ignore_ascii_case("status"))
        .is_some_and(|(_, text)| text.eq_ignore_ascii_case("OK"));
    if last_ok && !failed {
        return "OK".to_owned();
    }
    let messages: Vec<String> = rows.iter().map(|(k, t)| format!("{k}: {t}")).collect();
    if messages.is_empty() {
        "no answer".to_owned()
    } else {
        messages.join("; ")
    }
}

/// `POST /tables/check`.
pub async fn request(
    State(shared): State<Arc<Shared>>,
    Json(order): Json<TableCheckRequest>,
) -> Response {
    super::answer(check(&shared, &order).await, "checking tables")
}

async fn check(shared: &Arc<Shared>, order: &TableCheckRequest) -> Result<TableCheck, Error> {
    let (mut conn, flavor) = shared
        .root_with_flavor()
        .await
        .map_err(|(action, why)| Error::Server { action, why })?;
    if !order.hold {
        return sums(&mut conn, flavor, order).await;
    }
    holdable(&mut conn, flavor).await?;
    conn.query_drop(flavor.stop_applier())
        .await
        .map_err(server("stop the applier"))?;
    // The applier starts again whatever happens, even when the request is
    // dropped half way (the operator gave up, or went): the sums run in a
    // task of their own, and the start follows them there.
    let shared = shared.clone();
    let order = order.clone();
    let held = tokio::spawn(async move {
        let held = held(&shared, &mut conn, flavor, &order).await;
        let started = conn.query_drop(flavor.start_applier()).await;
        let held = held?;
        started.map_err(server("start the applier again"))?;
        info!(gtid_set = %held.gtid_set, tables = held.tables.len(), "summed tables at a held GTID set");
        Ok(held)
    });
    held.await.map_err(|e| Error::Server {
        action: "sum tables with the applier held",
        why: e.to_string(),
    })?
}

/// Only a read-only replica whose receiver and applier both run without an
/// error is held: an applier stopped for a reason (an error, a relay log
/// kept for a failover) must stay stopped.
async fn holdable(conn: &mut Conn, flavor: Flavor) -> Result<(), Error> {
    let read_only: Option<bool> = conn
        .query_first("SELECT @@GLOBAL.read_only")
        .await
        .map_err(server("read read_only"))?;
    let status = ebisu_mysql::driver::replica_status(conn, flavor)
        .await
        .map_err(|e| Error::Server {
            action: "read the replica status",
            why: e.to_string(),
        })?;
    let why = match (read_only, status) {
        (Some(false), _) => Some("the server is writable".to_owned()),
        (_, None) => Some("the server does not replicate".to_owned()),
        (_, Some(r)) if !r.sql_running || !r.receiver_running() => {
            Some("its receiver or applier is stopped".to_owned())
        }
        (_, Some(r)) if r.last_sql_errno != 0 => Some("its applier reports an error".to_owned()),
        _ => None,
    };
    why.map_or(Ok(()), |why| Err(Error::NotHoldable(why)))
}

/// The sums with the applier stopped: the set must not move while they are
/// taken, and the archive must come to hold it.
async fn held(
    shared: &Shared,
    conn: &mut Conn,
    flavor: Flavor,
    order: &TableCheckRequest,
) -> Result<TableCheck, Error> {
    let taken = sums(conn, flavor, order).await?;
    let after = executed(conn, flavor).await?;
    if after != taken.gtid_set {
        return Err(Error::Moved {
            before: taken.gtid_set,
            after,
        });
    }
    let held = GtidSet::parse(flavor, &taken.gtid_set).map_err(|e| Error::Server {
        action: "read the server's GTID set",
        why: e.to_string(),
    })?;
    let purged = purged(conn, flavor).await?;
    let deadline = tokio::time::Instant::now() + ARCHIVE_WAIT;
    loop {
        let archived = shared.archive.archived();
        let holds = archived
            .as_deref()
            .and_then(|a| GtidSet::parse(flavor, a).ok())
            .is_some_and(|a| archived_enough(&held, &a, purged.as_ref()));
        if holds {
            return Ok(taken);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotArchived {
                held: taken.gtid_set,
                archived,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the archive holds every transaction of `held` that waiting can
/// bring: those the server's binary logs still hold. What it lacks of
/// `held` and the server purged (MySQL's `gtid_purged`) will never come
/// from here; a restore that needs them is refused as a gap, or a newer
/// backup holds them.
pub fn archived_enough(held: &GtidSet, archived: &GtidSet, purged: Option<&GtidSet>) -> bool {
    match held.missing_from(archived) {
        Ok(lacking) if lacking.is_empty() => true,
        Ok(GtidDifference::MySql(lacking)) => {
            matches!(purged, Some(GtidSet::MySql(purged)) if purged.contains(&lacking))
        }
        Ok(GtidDifference::MariaDb(_)) | Err(_) => false,
    }
}

/// MySQL's `gtid_purged`: the transactions no binary log of the server
/// holds any more (MariaDB keeps no such set: `None`).
/// MySQL's `gtid_purged` (MariaDB has none: `None`).
async fn purged(conn: &mut Conn, flavor: Flavor) -> Result<Option<GtidSet>, Error> {
    if flavor.is_mariadb() {
        return Ok(None);
    }
    let action = "read the purged GTID set";
    let text = global_set(conn, "SELECT @@GLOBAL.gtid_purged", action).await?;
    GtidSet::parse(flavor, &text)
        .map(Some)
        .map_err(|e| Error::Server {
            action,
            why: e.to_string(),
        })
}

async fn executed(conn: &mut Conn, flavor: Flavor) -> Result<String, Error> {
    global_set(
        conn,
        flavor.gtid_executed_query(),
        "read the server's GTID set",
    )
    .await
}

/// A GTID set variable as one line (MySQL breaks long sets over lines).
async fn global_set(conn: &mut Conn, query: &str, action: &'static str) -> Result<String, Error> {
    let set: Option<String> = conn.query_first(query).await.map_err(server(action))?;
    Ok(set.unwrap_or_default().replace('\n', ""))
}

async fn sums(
    conn: &mut Conn,
    flavor: Flavor,
    order: &TableCheckRequest,
) -> Result<TableCheck, Error> {
    let gtid_set = executed(conn, flavor).await?;
    let tables = if order.tables.is_empty() {
        let all: Vec<TableName> = conn
            .query_map(TABLES_QUERY, |(schema, name)| TableName { schema, name })
            .await
            .map_err(server("list the tables"))?;
        sample(&all, usize::try_from(order.sample).unwrap_or(usize::MAX))
    } else {
        order.tables.clone()
    };
    let mut checked = Vec::with_capacity(tables.len());
    for table in tables {
        let quoted = format!(
            "{}.{}",
            quote_identifier(&table.schema),
            quote_identifier(&table.name)
        );
        // A missing table answers NULL (and a warning), not an error.
        let checksum: Option<Option<u64>> = conn
            .query_first(format!("CHECKSUM TABLE {quoted}"))
            .await
            .map(|row: Option<(String, Option<u64>)>| row.map(|(_, sum)| sum))
            .map_err(server("sum a table"))?;
        let check = if order.check {
            let rows: Vec<(String, String)> = conn
                .query_map(
                    format!("CHECK TABLE {quoted}"),
                    |(_table, _op, kind, text): (String, String, String, String)| (kind, text),
                )
                .await
                .map_err(server("check a table"))?;
            Some(check_verdict(&rows))
        } else {
            None
        };
        checked.push(TableSum {
            table,
            checksum: checksum.flatten(),
            check,
        });
    }
    Ok(TableCheck {
        gtid_set,
        tables: checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(n: usize) -> Vec<TableName> {
        (0..n)
            .map(|i| TableName {
                schema: "app".to_owned(),
                name: format!("t{i:03}"),
            })
            .collect()
    }

    #[test]
    fn the_archive_holds_enough_once_it_has_what_the_binary_logs_hold() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mysql = |s: &str| GtidSet::parse(Flavor::MySql84, &s.replace('U', uuid)).unwrap();
        let held = mysql("U:1-100");
        assert!(archived_enough(&held, &mysql("U:1-100"), None));
        assert!(archived_enough(&held, &mysql("U:1-120"), None));
        assert!(!archived_enough(&held, &mysql("U:1-99"), None));
        // An old gap (1-40 purged here before it was archived) never fills:
        // only what the binary logs still hold is waited for.
        let archived = mysql("U:41-100");
        assert!(!archived_enough(&held, &archived, None));
        assert!(archived_enough(&held, &archived, Some(&mysql("U:1-40"))));
        assert!(!archived_enough(
            &held,
            &mysql("U:41-90"),
            Some(&mysql("U:1-40"))
        ));
        let maria = |s: &str| GtidSet::parse(Flavor::MariaDb, s).unwrap();
        assert!(archived_enough(&maria("0-1-100"), &maria("0-1-100"), None));
        assert!(!archived_enough(&maria("0-1-100"), &maria("0-1-90"), None));
    }

    #[test]
    fn a_sample_is_every_table_when_there_are_few() {
        assert_eq!(sample(&tables(3), 16), tables(3));
        assert!(sample(&[], 16).is_empty());
    }

    #[test]
    fn a_sample_spreads_over_the_tables_without_repeating() {
        let all = tables(100);
        let picked = sample(&all, 4);
        let names: Vec<&str> = picked.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["t000", "t025", "t050", "t075"]);
        let picked = sample(&all, 99);
        let mut unique = picked.clone();
        unique.dedup();
        assert_eq!(unique.len(), 99);
    }

    #[test]
    fn check_table_is_ok_only_when_its_status_says_so_without_an_error() {
        let row = |k: &str, t: &str| (k.to_owned(), t.to_owned());
        assert_eq!(check_verdict(&[row("status", "OK")]), "OK");
        assert_eq!(
            check_verdict(&[row("warning", "old format"), row("status", "OK")]),
            "OK"
        );
        let corrupt = check_verdict(&[
            row("error", "Table is marked as crashed"),
            row("status", "Corrupt"),
        ]);
        assert!(corrupt.contains("crashed") && corrupt.contains("Corrupt"));
        assert_eq!(
            check_verdict(&[row("Error", "boom"), row("status", "OK")]),
            "Error: boom; status: OK"
        );
        assert_eq!(check_verdict(&[]), "no answer");
    }
}
