//! Leader election: of all operator pods, only the holder of one Lease in the
//! operator's namespace reconciles, so a rollout, a standby replica or a pod
//! that is slow to die never puts two operators on the same databases.

use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};

/// The Lease every operator pod of one installation competes for.
pub const LEASE_NAME: &str = ebisu_api::names::LEADER_LEASE;

/// How long a holder's claim lasts after its last renewal. A holder that
/// dies without releasing (a crash, a lost node) delays its successor by at
/// most this much.
const LEASE_SECONDS: u64 = 15;

/// The holder renews this long before its claim runs out; it also bounds the
/// clock skew between nodes that the lease tolerates.
const RENEW_BEFORE_SECONDS: u64 = 5;

/// Pause between attempts while the API server cannot be reached.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("failed to read or create the Lease {namespace}/{LEASE_NAME}: {source}")]
    Setup {
        namespace: String,
        source: LeaseManagerError,
    },

    #[error("failed to renew the Lease {LEASE_NAME}: {0}")]
    Renew(LeaseManagerError),

    #[error("failed to keep the Lease {LEASE_NAME}: another operator holds it now")]
    Lost,

    #[error("failed to release the Lease {LEASE_NAME}: {0}")]
    Release(LeaseManagerError),
}

/// How long after its last renewal seen a leader may act: the Lease's
/// duration less the renewal margin (kube-lease-manager renews this often,
/// so a leader that runs normally never falls out of it).
pub const ACT_FOR: Duration = Duration::from_secs(LEASE_SECONDS - 2);

/// Feeds `clock` with the renewals of the leader Lease this process holds,
/// as this process sees them (its resourceVersion changes), until the
/// process ends. A paused process resumes with an old confirmation and
/// acts on nothing until it sees the next renewal.
pub async fn confirm_renewals(
    client: kube::Client,
    namespace: String,
    identity: String,
    clock: std::sync::Arc<crate::reconcile::LeaderClock>,
) {
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client, &namespace);
    let mut seen: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(Some(lease)) = api.get_opt(LEASE_NAME).await else {
            continue;
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        let version = lease.metadata.resource_version.clone();
        if holder == Some(identity.as_str()) && version != seen {
            clock.confirm(std::time::Instant::now());
            seen = version;
        }
    }
}

/// One operator process standing for election under `identity`.
#[derive(Debug)]
pub struct Candidate {
    manager: LeaseManager,
    identity: String,
}

impl Candidate {
    /// Joins the election (creating the Lease if it is missing).
    pub async fn new(
        client: kube::Client,
        namespace: &str,
        identity: &str,
    ) -> Result<Self, LeaderError> {
        let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(RENEW_BEFORE_SECONDS)
            .with_field_manager(format!("ebisu-operator/{identity}"))
            .build()
            .await
            .map_err(|source| LeaderError::Setup {
                namespace: namespace.to_owned(),
                source,
            })?;
        Ok(Self {
            manager,
            identity: identity.to_owned(),
        })
    }

    /// Waits until this process holds the Lease. A candidate holds nothing
    /// yet, so API errors are only logged and retried.
    pub async fn acquire(&self) {
        loop {
            match self.manager.changed().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, lease = LEASE_NAME, "leading");
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, lease = LEASE_NAME, "failed to stand for election; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Renews the Lease while this process leads, and returns why leading
    /// ended. After that, another operator may act at any moment: the
    /// caller must stop acting at once. A failed renewal counts as the end
    /// too, because this process can no longer prove its claim.
    pub async fn lost(&self) -> LeaderError {
        loop {
            match self.manager.changed().await {
                Ok(true) => {}
                Ok(false) => return LeaderError::Lost,
                Err(error) => return LeaderError::Renew(error),
            }
        }
    }

    /// Hands the Lease over at shutdown, so a successor starts at once
    /// instead of waiting for the claim to run out.
    pub async fn release(&self) -> Result<(), LeaderError> {
        self.manager.release().await.map_err(LeaderError::Release)
    }
}
