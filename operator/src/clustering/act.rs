//! Carrying decisions out: SQL on the servers (as the operator user) and
//! role labels on the pods. Each action is independent; one failing does
//! not stop the others, and the next reconcile decides again.

use ebisu_api::names::{LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};
use ebisu_mysql::{Credentials, ReplicationSource, SemiSync};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use mysql_async::prelude::Queryable;
use serde_json::json;

use super::{
    decide::Action,
    observe::{self, Observed, OperatorAccount},
};

/// What `act` needs besides the decision.
pub struct Target<'a> {
    /// API client.
    pub client: &'a Client,
    /// Namespace of the pods.
    pub namespace: &'a str,
    /// The servers as observed.
    pub servers: &'a [Observed],
    /// The operator's account.
    pub account: &'a OperatorAccount,
    /// The replication account replicas connect with.
    pub replication: &'a Credentials,
    /// Semi-sync settings when it is on.
    pub semi_sync: Option<SemiSync>,
}

/// Carries out `action`; the error says what failed.
pub async fn apply(action: &Action, target: &Target<'_>) -> Result<(), String> {
    match action {
        Action::LabelPrimary(pod) => label(target, pod, Some(ROLE_PRIMARY)).await,
        Action::LabelReplica(pod) => label(target, pod, Some(ROLE_REPLICA)).await,
        Action::Unlabel(pod) => label(target, pod, None).await,
        Action::MakeWritable(pod) => {
            let (flavor, ip) = server(target, pod)?;
            sql(ip, target.account, &flavor.unfence()).await
        }
        Action::Fence(pod) => {
            let (flavor, ip) = server(target, pod)?;
            sql(ip, target.account, &flavor.fence()).await
        }
        Action::Replicate { pod, source_host } => {
            let (flavor, ip) = server(target, pod)?;
            let source = ReplicationSource::new(
                source_host,
                ebisu_api::names::MYSQL_PORT,
                target.replication.clone(),
            )
            .map_err(|e| e.to_string())?;
            sql(ip, target.account, &flavor.start_replication(&source)).await
        }
        Action::EnableSemiSync { pod, as_primary } => {
            let (flavor, ip) = server(target, pod)?;
            let Some(semi) = target.semi_sync else {
                return Ok(());
            };
            let statements = if *as_primary {
                flavor
                    .semi_sync_as_primary(&semi)
                    .map_err(|e| e.to_string())?
            } else {
                flavor.semi_sync_as_replica(&semi)
            };
            sql(ip, target.account, &statements).await
        }
    }
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn server<'a>(target: &'a Target<'_>, pod: &str) -> Result<(ebisu_mysql::Flavor, &'a str), String> {
    let observed = target
        .servers
        .iter()
        .find(|s| s.state.pod == pod)
        .ok_or_else(|| format!("failed to find server {pod}"))?;
    match (observed.flavor, observed.ip.as_deref()) {
        (Some(flavor), Some(ip)) => Ok((flavor, ip)),
        _ => Err(format!("failed to reach server {pod}")),
    }
}

async fn sql(ip: &str, account: &OperatorAccount, statements: &[String]) -> Result<(), String> {
    let mut conn = observe::connect(ip, account).await?;
    for statement in statements {
        conn.query_drop(statement)
            .await
            .map_err(|e| format!("failed to run a statement: {e}"))?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

async fn label(target: &Target<'_>, pod: &str, role: Option<&str>) -> Result<(), String> {
    let api = Api::<Pod>::namespaced(target.client.clone(), target.namespace);
    let patch = json!({ "metadata": { "labels": { LABEL_ROLE: role } } });
    api.patch(pod, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|e| format!("failed to label pod {pod}: {e}"))
}

/// The Event reason and message for an action.
pub fn describe(action: &Action) -> (&'static str, String) {
    match action {
        Action::LabelPrimary(pod) => (
            "PrimaryLabelled",
            format!("{pod} is the primary; the primary Service now selects it"),
        ),
        Action::LabelReplica(pod) => ("ReplicaLabelled", format!("{pod} is a replica")),
        Action::Unlabel(pod) => (
            "Unlabelled",
            format!("{pod} receives no traffic until it is repaired"),
        ),
        Action::MakeWritable(pod) => ("PrimaryWritable", format!("made {pod} writable")),
        Action::Fence(pod) => (
            "Fenced",
            format!("made {pod} read-only: it is not the primary"),
        ),
        Action::Replicate { pod, source_host } => (
            "ReplicationRepaired",
            format!("pointed {pod} at {source_host} and started replication"),
        ),
        Action::EnableSemiSync { pod, as_primary } => (
            "SemiSyncEnabled",
            format!(
                "enabled semi-sync on {pod} as {}",
                if *as_primary { "source" } else { "replica" }
            ),
        ),
    }
}
