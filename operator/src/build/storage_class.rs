//! The operator-managed StorageClass for `spec.storage.ebs`: EBS CSI volumes
//! (of the install's driver) bound where the pod is scheduled, expandable,
//! and kept when released.

use std::collections::BTreeMap;

use ebisu_api::names::{LABEL_CLUSTER, LABEL_NAMESPACE};
use k8s_openapi::{api::storage::v1::StorageClass, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use crate::{
    model::EbsDriver,
    validate::{StorageClassChoice, ValidatedCluster},
};

/// Builds the StorageClass, or `None` when the cluster uses one it does not own.
pub fn build(cluster: &ValidatedCluster) -> Option<StorageClass> {
    let StorageClassChoice::Managed { name, ebs } = &cluster.storage.class else {
        return None;
    };
    let mut parameters = BTreeMap::from([
        ("type".to_owned(), ebs.volume_type.as_str().to_owned()),
        ("encrypted".to_owned(), ebs.encrypted.to_string()),
        ("csi.storage.k8s.io/fstype".to_owned(), "ext4".to_owned()),
    ]);
    // Auto Mode tags a volume at creation only if the EKS cluster's role
    // was given the right to: there the operator's volume look tags them
    // (as it does volumes made before it tagged them).
    if cluster.ebs_driver == EbsDriver::AddOn {
        parameters.extend([
            (
                "tagSpecification_1".to_owned(),
                format!("{LABEL_CLUSTER}={}", cluster.name),
            ),
            (
                "tagSpecification_2".to_owned(),
                format!("{LABEL_NAMESPACE}={}", cluster.namespace),
            ),
        ]);
    }
    if let Some(iops) = ebs.iops {
        parameters.insert("iops".to_owned(), iops.to_string());
    }
    if let Some(throughput) = ebs.throughput {
        parameters.insert("throughput".to_owned(), throughput.to_string());
    }
    if let Some(key) = &ebs.kms_key_id {
        parameters.insert("kmsKeyId".to_owned(), key.clone());
    }
    let mut labels = cluster.labels();
    labels.insert(LABEL_NAMESPACE.to_owned(), cluster.namespace.clone());
    labels.insert(LABEL_CLUSTER.to_owned(), cluster.name.clone());
    Some(StorageClass {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        provisioner: cluster.ebs_driver.provisioner().to_owned(),
        parameters: Some(parameters),
        // A volume is in one zone: bind it only once the scheduler has chosen the
        // pod's node, so the pod and its volume share a zone.
        volume_binding_mode: Some("WaitForFirstConsumer".to_owned()),
        allow_volume_expansion: Some(true),
        // Database volumes outlive their claims: deleting data is the user's call.
        reclaim_policy: Some("Retain".to_owned()),
        ..StorageClass::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, MYSQL_PRODUCTION, SINGLE, validated};

    #[test]
    fn ebs_spec_becomes_a_wait_for_first_consumer_class() {
        let class = build(&validated(BASIC)).expect("managed class");
        assert_eq!(class.metadata.name.as_deref(), Some("ebisu-shop-orders"));
        assert_eq!(class.provisioner, "ebs.csi.aws.com");
        assert_eq!(
            class.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        assert_eq!(class.allow_volume_expansion, Some(true));
        assert_eq!(class.reclaim_policy.as_deref(), Some("Retain"));
        let params = class.parameters.expect("parameters");
        assert_eq!(params["type"], "gp3");
        assert_eq!(params["iops"], "6000");
        assert_eq!(params["throughput"], "250");
        assert_eq!(params["encrypted"], "true");
        assert!(!params.contains_key("kmsKeyId"));
        assert!(
            class.metadata.owner_references.is_none(),
            "cluster-scoped: no namespaced owner"
        );
    }

    #[test]
    fn named_or_default_class_is_not_managed() {
        assert!(build(&validated(MYSQL_PRODUCTION)).is_none());
        assert!(build(&validated(SINGLE)).is_none());
    }

    #[test]
    fn on_auto_mode_the_class_is_auto_mode_s_and_leaves_tagging_to_the_operator() {
        let cluster = ValidatedCluster {
            ebs_driver: EbsDriver::AutoMode,
            ..validated(BASIC)
        };
        let class = build(&cluster).expect("managed class");
        assert_eq!(class.provisioner, "ebs.csi.eks.amazonaws.com");
        let params = class.parameters.expect("parameters");
        assert!(
            !params.keys().any(|k| k.starts_with("tagSpecification")),
            "{params:?}"
        );
        assert_eq!(params["type"], "gp3");
    }
}
