//! The primary proves it still is. The operator names the primary pod in
//! the cluster's primary Lease (`<cluster>-primary`) before it makes that
//! server writable; the pod's agent renews the Lease through the API server
//! every second, and only while its own server answers. When it cannot
//! renew for the Lease's duration (the API server is out of reach, its pod
//! is cut off, its server froze or died) it fences its server itself, and
//! a server that comes back after such a gap is fenced before anything
//! else. The operator never gives the Lease to another pod before the
//! duration and a margin have passed since it last saw a renewal, so by the
//! time a new primary becomes writable the old one is fenced. A writable
//! server whose pod the Lease no longer names is fenced at once.
//!
//! Cost to the API server: one read and one write a second per primary
//! (100 clusters: 100 writes a second), and nothing for replicas beyond a
//! read a second.

use std::{sync::Arc, time::Duration};

use ebisu_mysql::Flavor;
use k8s_openapi::{
    api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use mysql_async::prelude::Queryable;
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Shared, fence::Fencer};

/// How often the Lease is read and the server looked at.
pub const TICK: Duration = Duration::from_millis(250);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// The duration assumed until the Lease has been read once.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(2);
/// How long one look at the server or the Lease may take.
const LOOK_TIMEOUT: Duration = Duration::from_millis(900);

/// Which Lease, and who this pod is.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the cluster's).
    pub namespace: String,
    /// This pod's name.
    pub pod: String,
}

/// The local server as this tick found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// It answered and takes writes.
    Writable,
    /// It answered and is read-only.
    ReadOnly,
    /// It did not answer (down, frozen, too slow).
    Silent,
}

/// The Lease as this tick read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRead {
    /// The pod it names.
    pub holder: Option<String>,
    /// How long a renewal counts.
    pub duration: Duration,
    /// Its resourceVersion (a renewal is conditional on it).
    pub version: String,
}

/// What to do this tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Fence the server, and why.
    pub fence: Option<&'static str>,
    /// Renew the Lease (after the fence, if both).
    pub renew: bool,
}

/// Decides a tick; pure. `held`: this pod held the Lease at the last read
/// that succeeded; `since_renewal`: time since its last renewal went
/// through (`None`: none yet).
pub fn plan(
    me: &str,
    server: Server,
    lease: Option<&LeaseRead>,
    held: bool,
    since_renewal: Option<Duration>,
    duration: Duration,
) -> Plan {
    let holder = lease.map(|l| l.holder.as_deref() == Some(me));
    let lapsed = since_renewal.is_none_or(|d| d >= duration);
    let fence = match (server, holder) {
        (Server::ReadOnly, _) => None,
        (Server::Writable, Some(false)) => Some("the primary Lease names another pod"),
        // Ours, or perhaps ours (unreadable), and not renewed in time: the
        // operator may have given it away meanwhile.
        (Server::Writable | Server::Silent, Some(true)) if lapsed => {
            Some("the primary Lease was not renewed within its duration")
        }
        (Server::Writable | Server::Silent, None) if held && lapsed => {
            Some("the primary Lease cannot be renewed (the API server does not answer)")
        }
        _ => None,
    };
    Plan {
        fence,
        renew: holder == Some(true) && server != Server::Silent,
    }
}

/// Whether a holder fences before it looks at anything this tick: it
/// missed its renewals (`lapsed`; paused, or could not renew), no fence
/// runs, and none was started since its last renewal. One such fence is
/// enough: the next tick renews once it is done (starting another each
/// tick kept the renewal, which waits for the fence, from ever going
/// through, and the operator's "make it writable" and this fence took
/// turns for seconds).
pub fn fence_on_waking(
    held: bool,
    lapsed: bool,
    fence_idle: bool,
    fenced_since_renewal: bool,
) -> bool {
    held && lapsed && fence_idle && !fenced_since_renewal
}

/// Whether a read that found the Lease naming this pod (`held`) after one
/// that did not (`held_before`) is the operator naming it just now: that
/// counts as a renewal (the operator wrote `renewTime` as it named it, and
/// saw it happen), so a new primary is not fenced as it is made writable.
/// After a restart of the agent (`None` before) it does not count: the
/// agent cannot tell a fresh grant from an old one it failed to renew.
pub fn granted(held_before: Option<bool>, held: bool) -> bool {
    held && held_before == Some(false)
}

/// Renews and checks until the process ends.
pub async fn run(shared: Arc<Shared>, config: LeaseConfig, fencer: Arc<Fencer>) {
    let api = loop {
        match kube::Client::try_default().await {
            Ok(client) => break Api::<Lease>::namespaced(client, &config.namespace),
            Err(error) => {
                warn!(%error, "cannot reach the API server for the primary Lease; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    info!(lease = %config.name, "watching the primary Lease");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renewal: Option<Instant> = None;
    let mut held = false;
    let mut held_before: Option<bool> = None;
    let mut duration = DEFAULT_DURATION;
    let mut fencing: Option<tokio::task::JoinHandle<()>> = None;
    // When the last fence on waking was started.
    let mut woke_fence: Option<Instant> = None;
    loop {
        tick.tick().await;
        let read_at = Instant::now();
        // A holder that missed its renewals (this process was paused, or
        // could not renew) fences before it looks at anything: the server
        // may have been replaced meanwhile, and a client must not find it
        // writable for a moment longer.
        if fence_on_waking(
            held,
            last_renewal.is_none_or(|at| read_at.saturating_duration_since(at) >= duration),
            fencing
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished),
            woke_fence.is_some_and(|fenced| last_renewal.is_none_or(|renewed| fenced > renewed)),
        ) {
            woke_fence = Some(read_at);
            fencing = Some(spawn_fence(
                &shared,
                &fencer,
                "the primary Lease was not renewed within its duration",
            ));
        }
        fencer.prepare(&shared).await;
        let (server, lease) = tokio::join!(look(&shared), read(&api, &config.name));
        let now = Instant::now();
        if let Some(lease) = &lease {
            duration = lease.duration;
            held = lease.holder.as_deref() == Some(config.pod.as_str());
            if granted(held_before, held) {
                last_renewal = Some(read_at);
            }
            held_before = Some(held);
        }
        let since_renewal = last_renewal.map(|at| now.saturating_duration_since(at));
        let plan = plan(
            &config.pod,
            server,
            lease.as_ref(),
            held,
            since_renewal,
            duration,
        );
        if let Some(why) = plan.fence
            && fencing
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            fencing = Some(spawn_fence(&shared, &fencer, why));
        }
        let fenced = fencing
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished);
        let due = since_renewal.is_none_or(|d| d >= RENEW_EVERY);
        if plan.renew
            && fenced
            && due
            && let Some(lease) = &lease
        {
            let sent = Instant::now();
            match renew(&api, &config.name, &lease.version).await {
                Ok(()) => last_renewal = Some(sent),
                Err(error) => warn!(%error, "failed to renew the primary Lease"),
            }
        }
    }
}

/// Fences in the background (a frozen server takes the fence when it
/// resumes); nothing is renewed until it is done.
fn spawn_fence(
    shared: &Arc<Shared>,
    fencer: &Arc<Fencer>,
    why: &'static str,
) -> tokio::task::JoinHandle<()> {
    let (shared, fencer) = (shared.clone(), fencer.clone());
    tokio::spawn(async move {
        match fencer.fence(&shared, true).await {
            Ok(()) => info!(why, "fenced the server until the operator decides"),
            Err(error) => warn!(why, %error, "failed to fence the server; trying again"),
        }
    })
}

/// Whether the server answers, and if so whether it takes writes.
async fn look(shared: &Shared) -> Server {
    let check = async {
        let mut conn = shared.monitor_conn().await?;
        let flavor: Flavor = shared.flavor(&mut conn).await?;
        let read_only: Option<i64> =
            conn.query_first(flavor.fence_state_query())
                .await
                .map_err(|source| crate::server::Error::Sql {
                    action: "read the fence state",
                    source,
                })?;
        let _ = conn.disconnect().await;
        Ok::<_, crate::server::Error>(read_only.unwrap_or(1) != 0)
    };
    match tokio::time::timeout(LOOK_TIMEOUT, check).await {
        Ok(Ok(true)) => Server::ReadOnly,
        Ok(Ok(false)) => Server::Writable,
        _ => Server::Silent,
    }
}

async fn read(api: &Api<Lease>, name: &str) -> Option<LeaseRead> {
    let lease = tokio::time::timeout(LOOK_TIMEOUT, api.get_opt(name))
        .await
        .ok()?
        .ok()?;
    // No Lease yet: nobody holds it.
    let Some(lease) = lease else {
        return Some(LeaseRead {
            holder: None,
            duration: DEFAULT_DURATION,
            version: String::new(),
        });
    };
    let spec = lease.spec.unwrap_or_default();
    Some(LeaseRead {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(DEFAULT_DURATION, Duration::from_secs),
        version: lease.metadata.resource_version.unwrap_or_default(),
    })
}

/// Sets `renewTime`, conditional on the Lease being as it was read (the
/// operator may have named another pod meanwhile).
async fn renew(api: &Api<Lease>, name: &str, version: &str) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": { "resourceVersion": version },
        "spec": { "renewTime": MicroTime(Timestamp::now()) },
    });
    tokio::time::timeout(
        LOOK_TIMEOUT,
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    .map_err(|_| {
        kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "renewal timed out",
        )))
    })?
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_that_missed_its_renewals_fences_once_then_renews() {
        assert!(fence_on_waking(true, true, true, false), "woke up: fence");
        assert!(
            !fence_on_waking(true, true, false, false),
            "one fence at a time"
        );
        assert!(
            !fence_on_waking(true, true, true, true),
            "fenced since the last renewal: renew now, do not fence again"
        );
        assert!(
            !fence_on_waking(true, false, true, false),
            "renewed in time"
        );
        assert!(!fence_on_waking(false, true, true, false), "not the holder");
    }

    const SECOND: Duration = Duration::from_secs(1);
    const TWO: Duration = Duration::from_secs(2);

    fn lease(holder: Option<&str>) -> LeaseRead {
        LeaseRead {
            holder: holder.map(str::to_owned),
            duration: TWO,
            version: "7".to_owned(),
        }
    }

    #[test]
    fn the_holder_renews_while_its_server_answers() {
        let ours = lease(Some("db-0"));
        for server in [Server::Writable, Server::ReadOnly] {
            assert_eq!(
                plan("db-0", server, Some(&ours), true, Some(SECOND), TWO),
                Plan {
                    fence: None,
                    renew: true
                }
            );
        }
        let silent = plan("db-0", Server::Silent, Some(&ours), true, Some(SECOND), TWO);
        assert!(!silent.renew && silent.fence.is_none(), "{silent:?}");
    }

    #[test]
    fn a_writable_server_the_lease_does_not_name_is_fenced_at_once() {
        let theirs = lease(Some("db-1"));
        let p = plan(
            "db-0",
            Server::Writable,
            Some(&theirs),
            false,
            Some(SECOND),
            TWO,
        );
        assert!(p.fence.is_some() && !p.renew);
        let replica = plan("db-0", Server::ReadOnly, Some(&theirs), false, None, TWO);
        assert_eq!(replica, Plan::default(), "a replica does nothing");
    }

    #[test]
    fn a_holder_that_could_not_renew_in_time_fences_first_even_when_it_answers_again() {
        let ours = lease(Some("db-0"));
        let woke = plan(
            "db-0",
            Server::Writable,
            Some(&ours),
            true,
            Some(TWO * 5),
            TWO,
        );
        assert!(woke.fence.is_some(), "fence before anything else");
        assert!(
            woke.renew,
            "then renew: the operator may keep it the primary"
        );
        let frozen = plan("db-0", Server::Silent, Some(&ours), true, Some(TWO), TWO);
        assert!(
            frozen.fence.is_some(),
            "a fence waits for the server to resume"
        );
        let no_api = plan("db-0", Server::Writable, None, true, Some(TWO), TWO);
        assert!(no_api.fence.is_some() && !no_api.renew);
        let not_yet = plan("db-0", Server::Writable, None, true, Some(SECOND), TWO);
        assert_eq!(
            not_yet,
            Plan::default(),
            "within the duration nothing happens"
        );
    }

    #[test]
    fn an_agent_that_never_held_the_lease_never_fences_on_silence() {
        let none = plan("db-2", Server::Writable, None, false, None, TWO);
        assert_eq!(none.fence, None);
        let silent = plan(
            "db-2",
            Server::Silent,
            Some(&lease(Some("db-0"))),
            false,
            None,
            TWO,
        );
        assert_eq!(silent.fence, None);
    }

    #[test]
    fn being_named_after_not_being_named_counts_as_a_renewal_but_not_after_a_restart() {
        assert!(granted(Some(false), true));
        assert!(!granted(Some(true), true), "a holder renews by itself");
        assert!(!granted(None, true), "a restarted agent cannot tell");
        assert!(!granted(Some(true), false));
    }

    #[test]
    fn a_new_agent_on_a_writable_holder_fences_first_then_renews() {
        let p = plan(
            "db-0",
            Server::Writable,
            Some(&lease(Some("db-0"))),
            true,
            None,
            TWO,
        );
        assert!(p.fence.is_some() && p.renew);
    }
}
