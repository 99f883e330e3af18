//! The [`Executor`] of server and pod actions: SQL on the servers (as the
//! operator user), role and reads labels on the pods, evictions and the
//! agents' re-seed requests. Each action is idempotent, so a step that is
//! run again after a failure or an operator restart does no harm. The
//! actions on the MySQLCluster itself (`Remember`, `ConsumeAnnotation`)
//! are not its business: the reconcile's pass carries those out.

use std::time::Duration;

use ebisu_api::names::{LABEL_READS, LABEL_ROLE, READS_SERVED, ROLE_PRIMARY, ROLE_REPLICA};
use ebisu_mysql::{Credentials, Flavor, GtidSet, ReplicationSource, SemiSync};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use mysql_async::{Conn, prelude::Queryable};
use serde_json::json;

use super::{
    decide::Action,
    execute::{ActionError as Error, Executor},
    observe::{self, ObservedServer},
};
use crate::model::OperatorAccount;

/// How long `SET GLOBAL read_only = ON` may wait for running commits
/// before client sessions are ended to let it through, when the primary
/// hands over (its commits are acknowledged and may finish).
const FENCE_PATIENCE: Duration = Duration::from_secs(5);
/// The same, for a server that must not take writes: only commits that
/// wait for an acknowledgement hold it up, and they are released at once.
const RELEASE_AFTER: Duration = Duration::from_millis(100);
/// How long a failover waits on a receiver's stop before it looks again.
const STOP_RECEIVER_PATIENCE: Duration = Duration::from_millis(300);

/// Carries out server and pod actions, with what they need besides the
/// decision.
pub struct ServerExecutor<'a> {
    /// API client.
    pub client: &'a Client,
    /// Namespace of the pods.
    pub namespace: &'a str,
    /// The cluster's primary Lease.
    pub lease: &'a str,
    /// The servers as observed.
    pub servers: &'a [ObservedServer],
    /// The operator's account.
    pub account: &'a OperatorAccount,
    /// The replication account replicas connect with.
    pub replication: &'a Credentials,
    /// Semi-sync settings when it is on.
    pub semi_sync: Option<SemiSync>,
    /// Service users whose sessions survive a fence.
    pub keep_sessions: &'a [ebisu_mysql::UserName],
    /// The clone token agents want for a re-seed request.
    pub clone_token: Option<&'a str>,
    /// HTTP client for the agents.
    pub agents: &'a reqwest::Client,
}

impl std::fmt::Debug for ServerExecutor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerExecutor")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Executor for ServerExecutor<'_> {
    async fn run(&self, action: &Action) -> Result<(), Error> {
        run_action(action, self).await
    }
}

/// Carries out `action`.
async fn run_action(action: &Action, target: &ServerExecutor<'_>) -> Result<(), Error> {
    match action {
        Action::Remember(_) | Action::ConsumeAnnotation(_) => Err(impossible(
            "change the MySQLCluster",
            "that is the reconcile's to do, not a server's",
        )),
        Action::LabelPrimary(pod) => label(target, pod, LABEL_ROLE, Some(ROLE_PRIMARY)).await,
        Action::LabelReplica(pod) => label(target, pod, LABEL_ROLE, Some(ROLE_REPLICA)).await,
        Action::Unlabel(pod) => label(target, pod, LABEL_ROLE, None).await,
        Action::LabelReads { pod, serve } => {
            label(target, pod, LABEL_READS, serve.then_some(READS_SERVED)).await
        }
        Action::HoldLease { pod, after } => hold_lease(target, pod, after.as_deref()).await,
        Action::MakeWritable(pod) => {
            let (flavor, mut conn) = open(target, pod).await?;
            run(&mut conn, pod, "make it writable", &flavor.unfence()).await
        }
        Action::Fence { pod, hand_over } => fence(target, pod, *hand_over).await,
        Action::Replicate { pod, source_host } => {
            let (flavor, mut conn) = open(target, pod).await?;
            let source = ReplicationSource::new(
                source_host,
                ebisu_api::names::MYSQL_PORT,
                target.replication.clone(),
            )
            .map_err(|e| impossible("point replication", e))?;
            let mut statements = vec![flavor.stop_replication()];
            if let Some(semi) = target.semi_sync {
                statements.extend(flavor.semi_sync_as_replica(&semi));
            }
            statements.extend(flavor.start_replication(&source));
            run(&mut conn, pod, "point replication", &statements).await
        }
        Action::EnableSemiSync { pod, as_primary } => {
            let Some(semi) = target.semi_sync else {
                return Ok(());
            };
            let (flavor, mut conn) = open(target, pod).await?;
            let mut statements = if *as_primary {
                flavor
                    .semi_sync_as_primary(&semi)
                    .map_err(|e| impossible("enable semi-sync", e))?
            } else {
                // The replica side takes effect when the receiver reconnects.
                let mut s = vec![flavor.stop_receiver()];
                s.extend(flavor.semi_sync_as_replica(&semi));
                s
            };
            if !*as_primary {
                statements.push(flavor.start_receiver());
            }
            run(&mut conn, pod, "enable semi-sync", &statements).await
        }
        Action::DisableSemiSync(pod) => {
            let (flavor, mut conn) = open(target, pod).await?;
            let off = SemiSync {
                enabled: false,
                wait_for_replicas: 0,
                timeout_ms: 0,
            };
            let statements = flavor
                .semi_sync_as_primary(&off)
                .map_err(|e| impossible("disable semi-sync", e))?;
            run(&mut conn, pod, "disable semi-sync", &statements).await
        }
        Action::StartApplier(pod) => {
            let (flavor, mut conn) = open(target, pod).await?;
            run(
                &mut conn,
                pod,
                "start the applier",
                &[flavor.start_applier()],
            )
            .await
        }
        Action::StopReceiver(pod) => {
            let (flavor, mut conn) = open(target, pod).await?;
            // A receiver blocked on a source that vanished can take seconds
            // to stop. The failover never relies on this call's answer: it
            // looks at every receiver again before it chooses, so a stop
            // still under way is not waited for here.
            match tokio::time::timeout(
                STOP_RECEIVER_PATIENCE,
                conn.query_drop(flavor.stop_receiver()),
            )
            .await
            {
                Ok(result) => result.map_err(refused(pod, "stop the receiver")),
                Err(_) => {
                    tracing::debug!(pod, "stopping the receiver takes a while; it goes on");
                    Ok(())
                }
            }
        }

        Action::CatchUp {
            pod,
            source,
            timeout_secs,
        } => {
            let (source_flavor, mut source_conn) = open(target, source).await?;
            let gtid: Option<String> = source_conn
                .query_first(source_flavor.gtid_executed_query())
                .await
                .map_err(refused(source, "read executed GTIDs"))?;
            let gtid = GtidSet::parse(source_flavor, &gtid.unwrap_or_default())
                .map_err(|e| impossible("read executed GTIDs", e))?;
            wait_applied(target, pod, &gtid, *timeout_secs).await
        }
        Action::WaitApplied {
            pod,
            gtid,
            timeout_secs,
        } => wait_applied(target, pod, gtid, *timeout_secs).await,
        Action::Promote(pod) => {
            let (flavor, mut conn) = open(target, pod).await?;
            let statements = [flavor.stop_replication(), flavor.reset_replication()];
            run(&mut conn, pod, "stop and forget replication", &statements).await
        }
        Action::Reseed { pod, reason } => reseed(target, pod, reason).await,
        Action::Restart(pod) => restart(target, pod).await,
        Action::SetGlobals { pod, settings } => set_globals(target, pod, settings).await,
    }
}

/// Sets each variable; one the server refuses (a value out of range, a
/// variable this version lacks) is logged and left to the next restart,
/// which reads it from my.cnf, rather than retried on every pass.
async fn set_globals(
    target: &ServerExecutor<'_>,
    pod: &str,
    settings: &[(String, String)],
) -> Result<(), Error> {
    let (_, mut conn) = open(target, pod).await?;
    for (variable, value) in settings {
        let statement = format!("SET GLOBAL {variable} = {value}");
        match run(&mut conn, pod, "apply mysqlConfig online", &[statement]).await {
            Ok(()) => {}
            Err(Error::Refused { source, .. }) => tracing::warn!(
                pod,
                variable,
                value,
                error = %source,
                "the server refused a mysqlConfig setting online; it applies at its next restart"
            ),
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Evicts the pod, so that its PodDisruptionBudget decides whether it may
/// go now; the StatefulSet starts it again from the current spec.
async fn restart(target: &ServerExecutor<'_>, pod: &str) -> Result<(), Error> {
    Api::<Pod>::namespaced(target.client.clone(), target.namespace)
        .evict(pod, &kube::api::EvictParams::default())
        .await
        .map(drop)
        .map_err(|source| match source {
            // 429 is how the eviction API says a budget forbids it now;
            // it answers 500 to a pod two budgets select, every time.
            kube::Error::Api(status) if status.code == 429 => Error::DisruptionRefused {
                pod: pod.to_owned(),
            },
            kube::Error::Api(status)
                if status.code == 500
                    && status.message.contains("more than one PodDisruptionBudget") =>
            {
                Error::OverlappingBudgets {
                    pod: pod.to_owned(),
                }
            }
            source => Error::Api {
                action: format!("evict pod {pod} to restart it on the current spec"),
                source,
            },
        })
}

/// Asks the pod's agent to set its data aside at the next start, then
/// deletes the pod so that the StatefulSet starts it again.
async fn reseed(target: &ServerExecutor<'_>, pod: &str, reason: &str) -> Result<(), Error> {
    let observed = target
        .servers
        .iter()
        .find(|s| s.state.pod == pod)
        .and_then(|s| s.ip.as_deref())
        .ok_or_else(|| impossible("ask for a re-seed", format!("{pod} has no address")))?;
    let token = target.clone_token.ok_or_else(|| {
        impossible(
            "ask for a re-seed",
            "the credentials Secret has no clone token",
        )
    })?;
    let url = format!(
        "http://{observed}:{}{}",
        ebisu_api::names::AGENT_PORT,
        ebisu_api::agent::PATH_RESEED
    );
    let response = target
        .agents
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(&ebisu_api::agent::ReseedRequest {
                reason: reason.to_owned(),
            })
            .unwrap_or_default(),
        )
        .timeout(observe::ANSWER_TIMEOUT)
        .send()
        .await
        .map_err(|e| impossible(&format!("ask {pod}'s agent for a re-seed"), e))?;
    if response.status() == reqwest::StatusCode::INSUFFICIENT_STORAGE {
        let why = response.text().await.unwrap_or_default();
        return Err(Error::ReseedRefused {
            pod: pod.to_owned(),
            why: why.chars().take(512).collect(),
        });
    }
    if !response.status().is_success() {
        return Err(impossible(
            &format!("ask {pod}'s agent for a re-seed"),
            format!("it answered {}", response.status()),
        ));
    }
    Api::<Pod>::namespaced(target.client.clone(), target.namespace)
        .delete(pod, &kube::api::DeleteParams::default())
        .await
        .map(drop)
        .map_err(|source| Error::Api {
            action: format!("delete pod {pod} to re-seed it"),
            source,
        })
}

/// Fences a server. Handing over (a switchover's primary): read-only first,
/// so running commits finish, then the client sessions end; a commit that
/// takes longer than the patience gets its session ended so the fence can go
/// through. Otherwise (a server that must not take writes, such as an old
/// primary that came back): read-only is requested first too, so no commit
/// can begin once the fence starts, and at once, on a second connection,
/// client sessions end (no client is told of a commit that completes now)
/// and commits still waiting for an acknowledgement are released, since
/// they hold read-only up; then the sessions that slipped in end too.
async fn fence(target: &ServerExecutor<'_>, pod: &str, hand_over: bool) -> Result<(), Error> {
    let (flavor, mut conn) = open(target, pod).await?;
    let fence = flavor.fence();
    let patience = if hand_over {
        FENCE_PATIENCE
    } else {
        RELEASE_AFTER
    };
    {
        let set = run(&mut conn, pod, "make it read-only", &fence);
        tokio::pin!(set);
        if let Ok(result) = tokio::time::timeout(patience, &mut set).await {
            result?;
        } else {
            // The first connection waits on running commits: end them and
            // release their waits on a second one.
            let (_, mut other) = open(target, pod).await?;
            end_client_sessions(target, flavor, &mut other, pod).await?;
            // Without the semi-sync plugin there is nothing to release.
            let _ = tokio::time::timeout(
                observe::ANSWER_TIMEOUT,
                other.query_drop(flavor.semi_sync_source_off()),
            )
            .await;
            set.await?;
        }
    }
    end_client_sessions(target, flavor, &mut conn, pod).await
}

/// Names `pod` in the cluster's primary Lease; with `after`, only if the
/// Lease is still at that version (a renewal since means the old holder's
/// agent is alive: the step fails, and the next look sees it).
async fn hold_lease(
    target: &ServerExecutor<'_>,
    pod: &str,
    after: Option<&str>,
) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(target.client.clone(), target.namespace);
    let now = MicroTime(Timestamp::now());
    let mut patch = json!({
        "spec": {
            "holderIdentity": pod,
            "acquireTime": now,
            "renewTime": now,
        }
    });
    if let Some(version) = after.filter(|v| !v.is_empty()) {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    api.patch(target.lease, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|source| Error::Api {
            action: format!("name {pod} in the primary Lease"),
            source,
        })
}

async fn end_client_sessions(
    target: &ServerExecutor<'_>,
    flavor: Flavor,
    conn: &mut Conn,
    pod: &str,
) -> Result<(), Error> {
    let keep: Vec<&ebisu_mysql::UserName> = target.keep_sessions.iter().collect();
    let ids: Vec<u64> = conn
        .query(flavor.client_connections_query(&keep))
        .await
        .map_err(refused(pod, "list client sessions"))?;
    for id in ids {
        // A session that ended by itself meanwhile is fine.
        let _ = conn.query_drop(flavor.kill_connection(id)).await;
    }
    Ok(())
}

async fn wait_applied(
    target: &ServerExecutor<'_>,
    pod: &str,
    gtid: &GtidSet,
    timeout_secs: u64,
) -> Result<(), Error> {
    let (flavor, mut conn) = open(target, pod).await?;
    let timeout = u32::try_from(timeout_secs).unwrap_or(u32::MAX);
    let query = flavor
        .wait_for_gtid_query(gtid, timeout)
        .map_err(|e| impossible("wait for transactions", e))?;
    let waited = tokio::time::timeout(
        Duration::from_secs(timeout_secs) + observe::ANSWER_TIMEOUT,
        conn.query_first::<Option<i64>, _>(query),
    )
    .await
    .map_err(|_| Error::TimedOut {
        pod: pod.to_owned(),
        action: "wait for transactions",
    })?
    .map_err(refused(pod, "wait for transactions"))?;
    if flavor.gtid_wait_succeeded(waited.flatten()) {
        Ok(())
    } else {
        Err(Error::TimedOut {
            pod: pod.to_owned(),
            action: "apply every transaction the old primary had",
        })
    }
}

async fn open(target: &ServerExecutor<'_>, pod: &str) -> Result<(Flavor, Conn), Error> {
    let observed = target
        .servers
        .iter()
        .find(|s| s.state.pod == pod)
        .ok_or_else(|| Error::Impossible {
            action: format!("find server {pod}"),
            why: "it is not part of the cluster".to_owned(),
        })?;
    let (Some(flavor), Some(ip)) = (observed.flavor, observed.ip.as_deref()) else {
        return Err(observe::Error::NoAddress {
            pod: pod.to_owned(),
        }
        .into());
    };
    let conn = observe::connect(pod, ip, target.account).await?;
    Ok((flavor, conn))
}

async fn run(
    conn: &mut Conn,
    pod: &str,
    action: &'static str,
    statements: &[String],
) -> Result<(), Error> {
    for statement in statements {
        tokio::time::timeout(observe::ANSWER_TIMEOUT, conn.query_drop(statement))
            .await
            .map_err(|_| Error::TimedOut {
                pod: pod.to_owned(),
                action,
            })?
            .map_err(refused(pod, action))?;
    }
    Ok(())
}

fn refused(pod: &str, action: &'static str) -> impl FnOnce(mysql_async::Error) -> Error {
    let pod = pod.to_owned();
    move |source| Error::Refused {
        pod,
        action,
        source,
    }
}

fn impossible(action: &str, why: impl std::fmt::Display) -> Error {
    Error::Impossible {
        action: action.to_owned(),
        why: why.to_string(),
    }
}

async fn label(
    target: &ServerExecutor<'_>,
    pod: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), Error> {
    let api = Api::<Pod>::namespaced(target.client.clone(), target.namespace);
    let patch = json!({ "metadata": { "labels": { key: value } } });
    api.patch(pod, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|source| Error::Api {
            action: format!("label pod {pod}"),
            source,
        })
}
