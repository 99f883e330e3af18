//! MariaDB: keeps READ_ONLY ADMIN, the privilege that writes through
//! `read_only`, from every account but ebisu's own, on this server. Every
//! agent does it on its own server without binary logging, so an account
//! created with `GRANT ALL` (on the primary, reaching replicas through
//! replication) loses it everywhere within a second, and a replica or a
//! fenced old primary refuses its writes like anyone else's.

use std::{sync::Arc, time::Duration};

use ebisu_api::Flavor as FlavorFamily;
use ebisu_mysql::{
    ServiceRole,
    sql::{Grantee, READ_ONLY_ADMIN_HOLDERS_QUERY, read_only_admins_to_revoke},
};
use mysql_async::{Conn, prelude::Queryable};
use tracing::{debug, info, warn};

use super::Shared;
use crate::server;

/// How often the holders are read: the longest an account granted
/// READ_ONLY ADMIN keeps it.
const EVERY: Duration = Duration::from_secs(1);

/// Runs for the life of the agent (at once returns on MySQL).
pub async fn run(shared: Arc<Shared>) {
    if shared.config.family != FlavorFamily::Mariadb {
        return;
    }
    let mut conn: Option<Conn> = None;
    loop {
        tokio::time::sleep(EVERY).await;
        let mut open = match conn.take() {
            Some(open) => open,
            None => match connect(&shared).await {
                Ok(open) => open,
                Err(e) => {
                    debug!(error = %e, "server not answering; READ_ONLY ADMIN looked at later");
                    continue;
                }
            },
        };
        match look(&shared, &mut open).await {
            Ok(()) => conn = Some(open),
            Err(e) => warn!(error = %e, "failed to keep READ_ONLY ADMIN to ebisu's accounts"),
        }
    }
}

async fn connect(shared: &Shared) -> Result<Conn, server::Error> {
    let mut conn = shared.root_conn().await?;
    // Each server revokes on its own: never a transaction for replicas.
    server::execute(
        &mut conn,
        &["SET SESSION sql_log_bin = 0".to_owned()],
        "keep revocations out of the binary log",
    )
    .await?;
    Ok(conn)
}

async fn look(shared: &Shared, conn: &mut Conn) -> Result<(), server::Error> {
    let sql = |action: &'static str| move |source| server::Error::Sql { action, source };
    let grantees: Vec<String> = conn
        .query(READ_ONLY_ADMIN_HOLDERS_QUERY)
        .await
        .map_err(sql("list READ_ONLY ADMIN holders"))?;
    let holders: Vec<Grantee> = grantees.iter().filter_map(|g| Grantee::parse(g)).collect();
    let operator = shared.credentials.users.get(ServiceRole::Operator);
    let revoke = read_only_admins_to_revoke(&holders, operator.user.as_str());
    for grantee in &revoke {
        conn.query_drop(grantee.revoke_read_only_admin())
            .await
            .map_err(sql("revoke READ_ONLY ADMIN"))?;
        info!(
            account = %grantee.account(),
            "took READ_ONLY ADMIN from an account that is not ebisu's: on MariaDB it writes through read_only"
        );
    }
    if revoke.is_empty() {
        return Ok(());
    }
    let read_only: Option<i64> = conn
        .query_first("SELECT @@GLOBAL.read_only")
        .await
        .map_err(sql("read read_only"))?;
    if read_only.unwrap_or(1) == 0 {
        // The primary: its sessions matter once it is fenced, and the
        // fence ends every one of them.
        return Ok(());
    }
    // Sessions opened before keep the privilege: end them.
    for grantee in &revoke {
        let ids: Vec<u64> = conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                (grantee.user.as_str(),),
            )
            .await
            .map_err(sql("list an account's sessions"))?;
        for id in ids {
            // A session that ended by itself meanwhile is fine.
            let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
        }
    }
    Ok(())
}
