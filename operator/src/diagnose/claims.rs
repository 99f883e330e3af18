//! Why a data claim waits for a volume, when the operator can tell: no
//! StorageClass at all, a class that does not exist, or a provisioner that
//! has not delivered for a while. Pure: the caller passes in what it read.

use k8s_openapi::{
    api::{core::v1::PersistentVolumeClaim, storage::v1::StorageClass},
    jiff::Timestamp,
};

use crate::model::{Problem, well_known::DEFAULT_CLASS};

/// How long a claim may wait for a provisioner before it counts as stuck.
pub const PATIENCE_SECS: i64 = 120;

/// Problems of the claims that are Pending.
pub fn pending(
    claims: &[PersistentVolumeClaim],
    classes: &[StorageClass],
    now: Timestamp,
) -> Vec<Problem> {
    let exists = |name: &str| {
        classes
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name))
    };
    let has_default = classes.iter().any(|c| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CLASS))
            .is_some_and(|v| v == "true")
    });
    claims
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
        .filter_map(|claim| {
            let name = claim.metadata.name.clone().unwrap_or_default();
            let class = claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .filter(|c| !c.is_empty());
            let why = match class {
                None if !has_default => "spec.storage names no StorageClass and the cluster has \
                     no default one: set spec.storage.ebs (ebisu then manages a class) or \
                     spec.storage.storageClassName, or mark a StorageClass as the default"
                    .to_owned(),
                Some(class) if !exists(&class) => format!(
                    "StorageClass {class} does not exist: create it, or re-create the cluster \
                     with an existing class"
                ),
                class => {
                    let waited = claim
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map_or(0, |t| now.duration_since(t.0).as_secs());
                    if waited < PATIENCE_SECS {
                        return None;
                    }
                    format!(
                        "the provisioner of StorageClass {} has not made a volume in {waited} s; \
                         `kubectl describe pvc {name}` shows its events",
                        class.unwrap_or_else(|| "(default)".to_owned())
                    )
                }
            };
            Some(Problem::ClaimPending { claim: name, why })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeClaimStatus},
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    fn claim(class: Option<&str>, phase: &str, age: i64) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-orders-0".to_owned()),
                creation_timestamp: Some(Time(Timestamp::from_second(1_000 - age).expect("t"))),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(str::to_owned),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.to_owned()),
                ..PersistentVolumeClaimStatus::default()
            }),
        }
    }

    fn class(name: &str, default: bool) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                annotations: default.then(|| {
                    [(DEFAULT_CLASS.to_owned(), "true".to_owned())]
                        .into_iter()
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            provisioner: "ebs.csi.aws.com".to_owned(),
            ..StorageClass::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000).expect("now")
    }

    #[test]
    fn a_claim_without_a_class_in_a_cluster_without_a_default_says_so() {
        let problems = pending(&[claim(None, "Pending", 5)], &[class("fast", false)], now());
        assert!(
            matches!(&problems[..], [Problem::ClaimPending { claim, why }] if claim == "data-orders-0" && why.contains("no default"))
        );
        assert!(pending(&[claim(None, "Pending", 5)], &[class("gp3", true)], now()).is_empty());
    }

    #[test]
    fn a_missing_class_is_named_at_once_and_a_slow_provisioner_after_a_while() {
        let problems = pending(&[claim(Some("io9"), "Pending", 1)], &[], now());
        assert!(
            matches!(&problems[..], [Problem::ClaimPending { why, .. }] if why.contains("io9 does not exist"))
        );
        let classes = [class("gp3", false)];
        assert!(pending(&[claim(Some("gp3"), "Pending", 30)], &classes, now()).is_empty());
        let problems = pending(&[claim(Some("gp3"), "Pending", 300)], &classes, now());
        assert!(
            matches!(&problems[..], [Problem::ClaimPending { why, .. }] if why.contains("300 s"))
        );
        assert!(pending(&[claim(Some("gp3"), "Bound", 300)], &classes, now()).is_empty());
    }
}
