//! What lets the instances' agents read and renew the cluster's primary
//! Lease, and nothing else: a ServiceAccount, a Role on that one Lease by
//! name, and the RoleBinding between them. Only the agent container mounts
//! the account's token.

use ebisu_api::names;
use k8s_openapi::api::{
    core::v1::ServiceAccount,
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The agents' ServiceAccount (no token mounted unless a container asks).
pub fn service_account(cluster: &ValidatedCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(cluster, names::agent_service_account(&cluster.name)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// Read and renew the primary Lease, by name.
pub fn role(cluster: &ValidatedCluster) -> Role {
    Role {
        metadata: child_meta(cluster, names::agent_service_account(&cluster.name)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".to_owned()]),
            resources: Some(vec!["leases".to_owned()]),
            resource_names: Some(vec![names::primary_lease(&cluster.name)]),
            verbs: vec!["get".to_owned(), "patch".to_owned()],
            ..PolicyRule::default()
        }]),
    }
}

/// The Role, granted to the ServiceAccount.
pub fn role_binding(cluster: &ValidatedCluster) -> RoleBinding {
    let name = names::agent_service_account(&cluster.name);
    RoleBinding {
        metadata: child_meta(cluster, name.clone()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name,
            namespace: Some(cluster.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    #[test]
    fn the_agents_may_read_and_renew_the_primary_lease_and_nothing_else() {
        let cluster = validated(BASIC);
        let rules = role(&cluster).rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["orders-primary".to_owned()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        let binding = role_binding(&cluster);
        assert_eq!(binding.role_ref.name, "orders-agent");
        assert_eq!(
            binding.subjects.expect("subjects")[0].name,
            service_account(&cluster).metadata.name.expect("name")
        );
    }
}
