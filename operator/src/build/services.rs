//! The three Services: headless `<name>` for per-pod DNS (peers find each other
//! before they are ready), `<name>-primary` for writes and `<name>-read` for reads.

use ebisu_api::{
    ServiceTemplate,
    names::{self, AGENT_PORT, LABEL_READS, LABEL_ROLE, MYSQL_PORT, READS_SERVED, ROLE_PRIMARY},
};
use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The headless Service behind the StatefulSet's per-pod DNS names.
pub fn headless(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: child_meta(cluster, names::headless_service(&cluster.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Seeding and replication need a peer's name before it is Ready.
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster.selector()),
            ports: Some(vec![port("mysql", MYSQL_PORT), port("agent", AGENT_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<name>-primary`: selects the one pod labelled primary.
pub fn primary(cluster: &ValidatedCluster) -> Service {
    role_service(
        cluster,
        names::primary_service(&cluster.name),
        (LABEL_ROLE, ROLE_PRIMARY),
        &cluster.services.primary,
    )
}

/// `<name>-read`: selects the replicas the operator labelled as serving
/// reads (replicating without error, within the allowed lag). Readiness
/// stays "serves queries": lag never makes a pod unready.
pub fn read(cluster: &ValidatedCluster) -> Service {
    role_service(
        cluster,
        names::read_service(&cluster.name),
        (LABEL_READS, READS_SERVED),
        &cluster.services.read,
    )
}

fn role_service(
    cluster: &ValidatedCluster,
    name: String,
    (key, value): (&str, &str),
    template: &ServiceTemplate,
) -> Service {
    let mut metadata = child_meta(cluster, name);
    if !template.labels.is_empty() {
        let mut labels = template.labels.clone();
        // Our own labels win: they are how the operator finds its objects.
        labels.extend(cluster.labels());
        metadata.labels = Some(labels);
    }
    if !template.annotations.is_empty() {
        metadata.annotations = Some(template.annotations.clone());
    }
    let mut selector = cluster.selector();
    selector.insert(key.to_owned(), value.to_owned());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(template.service_type.as_str().to_owned()),
            selector: Some(selector),
            ports: Some(vec![port("mysql", MYSQL_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn port(name: &str, number: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(number),
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, MYSQL_PRODUCTION, validated};

    #[test]
    fn headless_service_publishes_unready_pods() {
        let svc = headless(&validated(BASIC));
        assert_eq!(svc.metadata.name.as_deref(), Some("orders"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(names::selector_labels("orders")));
        let ports: Vec<i32> = spec.ports.expect("ports").iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![3306, 9080]);
    }

    #[test]
    fn primary_service_selects_only_the_primary() {
        let svc = primary(&validated(BASIC));
        assert_eq!(svc.metadata.name.as_deref(), Some("orders-primary"));
        let selector = svc.spec.and_then(|s| s.selector).expect("selector");
        assert_eq!(
            selector.get("ebisu.dev/role").map(String::as_str),
            Some("primary")
        );
        assert_eq!(
            selector.get("ebisu.dev/cluster").map(String::as_str),
            Some("orders")
        );
    }

    #[test]
    fn read_service_selects_replicas_that_serve_reads() {
        let svc = read(&validated(BASIC));
        assert_eq!(svc.metadata.name.as_deref(), Some("orders-read"));
        let selector = svc.spec.and_then(|s| s.selector).expect("selector");
        assert_eq!(
            selector.get("ebisu.dev/reads").map(String::as_str),
            Some("serve")
        );
        assert_eq!(selector.get("ebisu.dev/role"), None);
    }

    #[test]
    fn service_template_sets_type_and_annotations_but_not_our_labels() {
        let svc = primary(&validated(MYSQL_PRODUCTION));
        assert_eq!(
            svc.spec.as_ref().and_then(|s| s.type_.as_deref()),
            Some("LoadBalancer")
        );
        let annotations = svc.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"],
            "internal"
        );
        assert_eq!(
            read(&validated(MYSQL_PRODUCTION))
                .spec
                .and_then(|s| s.type_)
                .as_deref(),
            Some("ClusterIP")
        );
    }
}
