//! Fencing the local server from its own agent: read-only requested first,
//! so no commit can begin once the fence starts (on MySQL behind
//! `offline_mode`, so no client finds it writable while read-only waits
//! for the commits in progress); meanwhile, on a second
//! connection, client sessions are ended (a commit that completes now is
//! told to nobody) and commits waiting for acknowledgements that will not
//! come are released, since they hold read-only up; then the sessions that
//! slipped in before read-only took effect are ended too. This is the one
//! change the agent makes to roles, and it only ever removes writability:
//! the operator makes a server writable again if it is still the primary.
//!
//! Both connections are opened before they are needed and kept: a frozen
//! server (SIGSTOP, a paused machine) accepts no new connection, but
//! statements already sent on open ones run first when it resumes, before
//! any client that has yet to connect.

use std::time::Duration;

use ebisu_mysql::{Flavor, ServiceRole};
use mysql_async::{Conn, prelude::Queryable};
use tokio::sync::Mutex;

use super::Shared;
use crate::server;

/// How long read-only may wait for running commits before the second
/// connection ends sessions and releases waits.
const PATIENCE: Duration = Duration::from_millis(100);

/// Two root connections kept open for a fence.
#[derive(Debug, Default)]
pub struct Fencer {
    conns: Mutex<Vec<Conn>>,
}

impl Fencer {
    /// Opens the connections a fence will need, when they are not open.
    pub async fn prepare(&self, shared: &Shared) {
        let mut conns = self.conns.lock().await;
        while conns.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(1), shared.root_conn()).await {
                Ok(Ok(conn)) => conns.push(conn),
                _ => return,
            }
        }
    }

    /// Fences the server: idempotent, and waits as long as a frozen server
    /// takes to resume (statements sent on the kept connections run first).
    /// `urgent` (the server may have been replaced already): sessions end
    /// and waits are released at once, beside read-only, not after a
    /// moment's patience.
    pub async fn fence(&self, shared: &Shared, urgent: bool) -> Result<(), server::Error> {
        let mut conns = std::mem::take(&mut *self.conns.lock().await);
        let first = match conns.pop() {
            Some(conn) => conn,
            None => shared.root_conn().await?,
        };
        let flavor = shared.known_flavor();
        let (statements, patience) = if urgent {
            (flavor.fence_urgently(), Duration::ZERO)
        } else {
            (flavor.fence(), PATIENCE)
        };
        fence(shared, flavor, &statements, first, conns.pop(), patience).await
    }
}

async fn fence(
    shared: &Shared,
    flavor: Flavor,
    statements: &[String],
    mut first: Conn,
    second: Option<Conn>,
    patience: Duration,
) -> Result<(), server::Error> {
    // The second connection must not end the first's session: it still has
    // sessions to end once read-only took effect.
    let first_id = u64::from(first.id());
    {
        let set = server::execute(&mut first, statements, "make it read-only");

        tokio::pin!(set);
        let waited = if patience.is_zero() {
            None
        } else {
            tokio::time::timeout(patience, &mut set).await.ok()
        };
        if let Some(result) = waited {
            result?;
        } else {
            let release = async {
                let mut other = match second {
                    Some(conn) => conn,
                    None => shared.root_conn().await?,
                };
                end_sessions(shared, flavor, &mut other, &[first_id]).await?;
                // Without the semi-sync plugin there is nothing to release.
                let _ = other.query_drop(flavor.semi_sync_source_off()).await;
                Ok::<_, server::Error>(())
            };
            let (set, released) = tokio::join!(&mut set, release);
            set?;
            released?;
        }
    }
    end_sessions(shared, flavor, &mut first, &[]).await
}

/// Ends every client session but the service users' (root's too: on
/// MariaDB root writes through `read_only`), but `spared`.
async fn end_sessions(
    shared: &Shared,
    flavor: Flavor,
    conn: &mut Conn,
    spared: &[u64],
) -> Result<(), server::Error> {
    let users = &shared.credentials.users;
    let keep = [
        &users.get(ServiceRole::Operator).user,
        &users.get(ServiceRole::Replication).user,
        &users.get(ServiceRole::Clone).user,
        &users.get(ServiceRole::Monitor).user,
    ];
    let ids: Vec<u64> = conn
        .query(flavor.client_connections_query(&keep))
        .await
        .map_err(|source| server::Error::Sql {
            action: "list client sessions",
            source,
        })?;
    for id in ids.into_iter().filter(|id| !spared.contains(id)) {
        // A session that ended by itself meanwhile is fine.
        let _ = conn.query_drop(flavor.kill_connection(id)).await;
    }
    Ok(())
}
