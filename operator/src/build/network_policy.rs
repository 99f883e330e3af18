//! The instance pods' NetworkPolicy: the database port stays open to every
//! client (applications live where the user puts them), while the agent's
//! port answers only this cluster's own pods (clone donors, peers) and the
//! operator's namespace, so no other pod can flood or probe the agents.
//! Kubernetes always lets a pod's own node in, so the kubelet's probes pass.

use ebisu_api::names::{self, AGENT_PORT, MYSQL_PORT};
use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The label every namespace carries with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Builds the policy selecting the cluster's instance pods.
pub fn build(cluster: &ValidatedCluster) -> NetworkPolicy {
    let port = |p: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(p))),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    let labels = |l: std::collections::BTreeMap<String, String>| LabelSelector {
        match_labels: Some(l),
        ..LabelSelector::default()
    };
    let peers = NetworkPolicyPeer {
        pod_selector: Some(labels(cluster.selector())),
        ..NetworkPolicyPeer::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(labels(
            [(
                NAMESPACE_NAME_LABEL.to_owned(),
                cluster.operator_namespace.clone(),
            )]
            .into(),
        )),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: child_meta(cluster, names::network_policy(&cluster.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(labels(cluster.selector())),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                // Clients: from anywhere (no `from`).
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(MYSQL_PORT)]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(AGENT_PORT)]),
                    from: Some(vec![peers, operator]),
                },
            ]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    #[test]
    fn the_agent_port_answers_only_the_clusters_pods_and_the_operator() {
        let cluster = validated(BASIC);
        let policy = build(&cluster);
        let spec = policy.spec.expect("spec");
        assert_eq!(
            spec.pod_selector.and_then(|s| s.match_labels),
            Some(cluster.selector())
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.expect("ingress rules");
        let on = |p: u16| {
            rules
                .iter()
                .filter(|r| {
                    r.ports
                        .iter()
                        .flatten()
                        .any(|port| port.port == Some(IntOrString::Int(i32::from(p))))
                })
                .collect::<Vec<_>>()
        };
        let mysql = on(MYSQL_PORT);
        assert_eq!(mysql.len(), 1);
        assert_eq!(mysql[0].from, None, "clients from anywhere");
        let agent = on(AGENT_PORT);
        assert_eq!(agent.len(), 1);
        let from = agent[0].from.clone().expect("agent sources limited");
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[0].pod_selector.clone().and_then(|s| s.match_labels),
            Some(cluster.selector())
        );
        assert!(from[0].namespace_selector.is_none(), "own namespace only");
        assert_eq!(
            from[1]
                .namespace_selector
                .clone()
                .and_then(|s| s.match_labels)
                .and_then(|l| l.get(NAMESPACE_NAME_LABEL).cloned()),
            Some("ebisu-system".to_owned())
        );
        assert!(from[1].pod_selector.is_none());
        assert_eq!(
            rules.len(),
            2,
            "no other port is opened (a policy denies the rest)"
        );
        assert_eq!(
            policy.metadata.owner_references,
            Some(vec![cluster.owner.clone()])
        );
    }
}
