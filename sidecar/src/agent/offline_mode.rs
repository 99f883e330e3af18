//! MySQL: lifts `offline_mode` an urgent fence left on. The fence turns
//! clients away with `offline_mode` only until `super_read_only` holds; a
//! fence cut short (its connections broken by a freeze, the agent
//! restarted) can leave it on, and then every account without
//! CONNECTION_ADMIN is refused for good, the agent's monitor account (so its
//! readiness) included. Once the server is super-read-only, offline mode
//! protects nothing, so the agent lifts it.

use std::{sync::Arc, time::Duration};

use ebisu_api::Flavor as FlavorFamily;
use mysql_async::{Conn, prelude::Queryable};
use tracing::{debug, info, warn};

use super::Shared;
use crate::server;

/// How often the server is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// Whether offline mode may be lifted: it is on, and the server is
/// super-read-only already (no urgent fence is half-way).
pub fn may_lift(offline: bool, super_read_only: bool) -> bool {
    offline && super_read_only
}

/// Runs for the life of the agent (at once returns on MariaDB, which has
/// no offline mode).
pub async fn run(shared: Arc<Shared>) {
    if shared.config.family != FlavorFamily::Mysql {
        return;
    }
    let mut conn: Option<Conn> = None;
    loop {
        tokio::time::sleep(EVERY).await;
        let mut open = match conn.take() {
            Some(open) => open,
            None => match shared.root_conn().await {
                Ok(open) => open,
                Err(e) => {
                    debug!(error = %e, "server not answering; offline mode looked at later");
                    continue;
                }
            },
        };
        match look(&mut open).await {
            Ok(()) => conn = Some(open),
            Err(e) => warn!(error = %e, "failed to look at offline mode"),
        }
    }
}

async fn look(conn: &mut Conn) -> Result<(), server::Error> {
    let state: Option<(i64, i64)> = conn
        .query_first("SELECT @@GLOBAL.offline_mode, @@GLOBAL.super_read_only")
        .await
        .map_err(|source| server::Error::Sql {
            action: "read offline mode",
            source,
        })?;
    let Some((offline, super_read_only)) = state else {
        return Ok(());
    };
    if may_lift(offline != 0, super_read_only != 0) {
        server::execute(
            conn,
            &["SET GLOBAL offline_mode = OFF".to_owned()],
            "lift offline mode",
        )
        .await?;
        info!("lifted offline mode an interrupted fence left on: the server is read-only");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_mode_is_lifted_only_behind_super_read_only() {
        assert!(may_lift(true, true));
        assert!(!may_lift(true, false), "an urgent fence is half-way");
        assert!(!may_lift(false, true));
        assert!(!may_lift(false, false));
    }
}
