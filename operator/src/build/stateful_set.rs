//! The StatefulSet running the instances. Each pod: an init container that
//! copies the sidecar binary into the pod, an init container (server image)
//! that gives the server its identity and seeds its data directory, the server
//! itself started with an explicit command, and the sidecar agent (server image,
//! so its backup tools match the server's version).

use std::collections::BTreeMap;

use ebisu_api::names::{
    self, AGENT_PORT, CONFIG_TEMPLATE_DIR, CREDENTIALS_DIR, DATA_DIR, DATA_VOLUME, LABEL_ROLE,
    MYSQL_PORT, RUN_DIR, SERVER_CONFIG_DIR, SERVER_CONFIG_FILE,
};
use k8s_openapi::{
    api::{
        apps::v1::{
            StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
            StatefulSetUpdateStrategy,
        },
        core::v1::{
            Affinity, Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container,
            ContainerPort, DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource,
            EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle,
            LifecycleHandler, ObjectFieldSelector, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
            PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements,
            SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection,
            TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection,
            VolumeResourceRequirements, WeightedPodAffinityTerm,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::child_meta;
use crate::{model::well_known::ZONE_LABEL, validate::ValidatedCluster};

/// The user's pod annotations and the server settings' digest.
fn pod_annotations(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let mut annotations = cluster.pod.annotations.clone();
    annotations.insert(
        names::ANNOTATION_CONFIG_DIGEST.to_owned(),
        super::config_map::server_config_digest(cluster),
    );
    annotations
}

/// Where the sidecar binary is copied so that containers of any image can run it.
pub const SIDECAR_BIN_DIR: &str = "/opt/ebisu/bin";
/// The sidecar binary inside the pod.
pub const SIDECAR_BIN: &str = "/opt/ebisu/bin/ebisu-sidecar";
/// The sidecar binary inside the sidecar image.
pub const SIDECAR_IMAGE_BIN: &str = "/ebisu-sidecar";
/// User and group the server runs as (the `mysql` user of the official images).
pub const MYSQL_UID: i64 = 999;

const SIDECAR_VOLUME: &str = "ebisu-bin";
const CONFIG_VOLUME: &str = "config";
const SERVER_CONFIG_VOLUME: &str = "server-config";
const CREDENTIALS_VOLUME: &str = "credentials";
const RUN_VOLUME: &str = "run";
const TMP_VOLUME: &str = "tmp";

/// Builds the StatefulSet.
pub fn build(cluster: &ValidatedCluster) -> StatefulSet {
    let mut pod_labels = cluster.pod.labels.clone();
    pod_labels.extend(cluster.labels());
    StatefulSet {
        metadata: child_meta(cluster, names::statefulset(&cluster.name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.replicas),
            service_name: Some(names::headless_service(&cluster.name)),
            selector: LabelSelector {
                match_labels: Some(cluster.selector()),
                ..LabelSelector::default()
            },
            // One at a time: a new instance seeds from a peer that is already serving.
            pod_management_policy: Some("OrderedReady".to_owned()),
            // The operator restarts pods itself, replicas first and the primary last
            // after a switchover.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Never delete data on a guess: scaled-down or deleted clusters keep volumes.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations(cluster)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster)),
            },
            volume_claim_templates: Some(vec![volume_claim_template(cluster)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod_spec(cluster: &ValidatedCluster) -> PodSpec {
    PodSpec {
        init_containers: Some(vec![install_sidecar(cluster), init(cluster)]),
        containers: vec![server(cluster), agent(cluster)],
        volumes: Some(volumes(cluster)),
        // Only the agent talks to the Kubernetes API (the primary Lease),
        // and only its container mounts the token.
        service_account_name: Some(names::agent_service_account(&cluster.name)),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(MYSQL_UID),
            run_as_group: Some(MYSQL_UID),
            fs_group: Some(MYSQL_UID),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        affinity: Some(
            cluster
                .pod
                .affinity
                .clone()
                .unwrap_or_else(|| default_affinity(cluster)),
        ),
        topology_spread_constraints: Some(if cluster.pod.topology_spread_constraints.is_empty() {
            default_zone_spread(cluster)
        } else {
            cluster.pod.topology_spread_constraints.clone()
        }),
        tolerations: (!cluster.pod.tolerations.is_empty()).then(|| cluster.pod.tolerations.clone()),
        node_selector: (!cluster.pod.node_selector.is_empty())
            .then(|| cluster.pod.node_selector.clone()),
        priority_class_name: cluster.pod.priority_class_name.clone(),
        ..PodSpec::default()
    }
}

fn install_sidecar(cluster: &ValidatedCluster) -> Container {
    Container {
        name: "install-sidecar".to_owned(),
        image: Some(cluster.sidecar_image.clone()),
        command: Some(vec![
            SIDECAR_IMAGE_BIN.to_owned(),
            "install".to_owned(),
            SIDECAR_BIN.to_owned(),
        ]),
        volume_mounts: Some(vec![mount(SIDECAR_VOLUME, SIDECAR_BIN_DIR, false)]),
        security_context: Some(restricted()),
        resources: Some(small_resources()),
        ..Container::default()
    }
}

fn init(cluster: &ValidatedCluster) -> Container {
    Container {
        name: "init".to_owned(),
        image: Some(cluster.image.clone()),
        command: Some(vec![SIDECAR_BIN.to_owned(), "init".to_owned()]),
        // Why it failed reaches the pod's status, where the operator reads it.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        env: Some(sidecar_env(cluster)),
        // A restore to a point reads the archive here.
        env_from: archive_env_from(cluster),
        volume_mounts: Some(vec![
            mount(SIDECAR_VOLUME, SIDECAR_BIN_DIR, true),
            mount(DATA_VOLUME, DATA_DIR, false),
            mount(CONFIG_VOLUME, CONFIG_TEMPLATE_DIR, true),
            mount(SERVER_CONFIG_VOLUME, SERVER_CONFIG_DIR, false),
            mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR, true),
            mount(RUN_VOLUME, RUN_DIR, false),
            mount(TMP_VOLUME, "/tmp", false),
        ]),
        // Seeding may run the server and its backup tool: give it the server's resources.
        resources: cluster.pod.resources.clone(),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

fn server(cluster: &ValidatedCluster) -> Container {
    Container {
        name: names::SERVER_CONTAINER.to_owned(),
        image: Some(cluster.image.clone()),
        // An explicit command: no entrypoint script may initialise or alter the data.
        command: Some(vec![
            cluster.flavor.server_command().to_owned(),
            format!("--defaults-file={SERVER_CONFIG_FILE}"),
        ]),
        ports: Some(vec![container_port("mysql", MYSQL_PORT)]),
        // The pre-stop hook needs the sidecar binary and who this pod is
        // (it asks the agents, so no credentials).
        env: Some(sidecar_env(cluster)),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_DIR, false),
            mount(SERVER_CONFIG_VOLUME, SERVER_CONFIG_DIR, true),
            mount(RUN_VOLUME, RUN_DIR, false),
            mount(TMP_VOLUME, "/tmp", false),
            mount(SIDECAR_VOLUME, SIDECAR_BIN_DIR, true),
        ]),
        lifecycle: hold_primary(cluster),
        resources: cluster.pod.resources.clone(),
        // Ready means "serving queries", as the agent checks it. Never "caught up":
        // lag must not take a replica out of failover candidacy or of its Service.
        // Asked every second: a restarted server (its process killed, say)
        // is back in its Services within a second of answering.
        readiness_probe: Some(Probe {
            http_get: Some(http_get(ebisu_api::agent::PATH_READYZ)),
            period_seconds: Some(1),
            timeout_seconds: Some(2),
            failure_threshold: Some(5),
            ..Probe::default()
        }),
        // Crash recovery of a large data set can take long: allow an hour
        // to start, looking every second.
        startup_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("mysql".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3600),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("mysql".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

fn agent(cluster: &ValidatedCluster) -> Container {
    let mut env = sidecar_env(cluster);
    env.push(value_env(
        "EBISU_PRIMARY_LEASE",
        &names::primary_lease(&cluster.name),
    ));
    Container {
        name: "agent".to_owned(),
        image: Some(cluster.image.clone()),
        command: Some(vec![SIDECAR_BIN.to_owned(), "agent".to_owned()]),
        env: Some(env),
        ports: Some(vec![container_port("agent", AGENT_PORT)]),
        env_from: archive_env_from(cluster),
        volume_mounts: Some(vec![
            mount(SIDECAR_VOLUME, SIDECAR_BIN_DIR, true),
            mount(DATA_VOLUME, DATA_DIR, false),
            mount(SERVER_CONFIG_VOLUME, SERVER_CONFIG_DIR, true),
            mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR, true),
            mount(RUN_VOLUME, RUN_DIR, false),
            mount(TMP_VOLUME, "/tmp", false),
            mount(API_ACCESS_VOLUME, API_ACCESS_DIR, true),
        ]),
        liveness_probe: Some(Probe {
            http_get: Some(http_get(ebisu_api::agent::PATH_HEALTHZ)),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        // The operator reads the agent during the switchover too.
        lifecycle: hold_primary(cluster),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("64Mi".to_owned())),
            ])),
            // Serving a clone runs the backup tool in this container.
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("1Gi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

/// The archive's S3 credentials, when not the pod's own (Pod Identity or
/// IRSA on the cluster's service account): the archiving agent's and the
/// replaying init step's environment.
fn archive_env_from(
    cluster: &ValidatedCluster,
) -> Option<Vec<k8s_openapi::api::core::v1::EnvFromSource>> {
    let secret = cluster
        .backup_schedule
        .as_ref()?
        .archive
        .as_ref()?
        .credentials_secret
        .clone()?;
    Some(vec![k8s_openapi::api::core::v1::EnvFromSource {
        secret_ref: Some(k8s_openapi::api::core::v1::SecretEnvSource {
            name: secret,
            optional: Some(false),
        }),
        ..Default::default()
    }])
}

/// How long a deleted primary's pod may hold its server up for the
/// switchover: well inside the termination grace period, so the server
/// still gets its SIGTERM and a clean shutdown.
pub const PRE_STOP_SECONDS: u64 = 90;
/// The pods' termination grace period.
pub const TERMINATION_GRACE_SECONDS: i64 = 120;

/// preStop: while this pod's server is the primary and a replica can take
/// over, wait (bounded) until the operator has moved the primary away.
/// None with `failover: Manual`: nobody would move it.
fn hold_primary(cluster: &ValidatedCluster) -> Option<Lifecycle> {
    if cluster.failover.mode == ebisu_api::FailoverMode::Manual {
        return None;
    }
    Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    SIDECAR_BIN.to_owned(),
                    "pre-stop".to_owned(),
                    format!("--timeout-seconds={PRE_STOP_SECONDS}"),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    })
}

/// What the sidecar needs to know about its cluster; credentials come as files.
fn sidecar_env(cluster: &ValidatedCluster) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("EBISU_ROLE", &format!("metadata.labels['{LABEL_ROLE}']")),
        value_env("EBISU_CLUSTER", &cluster.name),
        value_env("EBISU_FLAVOR", cluster.flavor.as_str()),
        value_env("EBISU_SERVER_ID_BASE", &cluster.server_id_base.to_string()),
        value_env(
            "EBISU_FAILOVER_AFTER_SECONDS",
            &cluster.failover.after_seconds.to_string(),
        ),
    ];
    if let Some(limit) = cluster.clone_rate_limit {
        env.push(value_env("EBISU_CLONE_RATE_LIMIT", &limit.to_string()));
    }
    if cluster.clone_donor == ebisu_api::DonorPreference::PrimaryOnly {
        env.push(value_env("EBISU_CLONE_PRIMARY_ONLY", "true"));
    }
    // The owner's password is a file of the credentials Secret.
    if let Some(database) = &cluster.database {
        env.push(value_env("EBISU_APP_DATABASE", &database.name));
        env.push(value_env("EBISU_APP_OWNER", &database.owner));
    }
    env
}

fn volumes(cluster: &ValidatedCluster) -> Vec<Volume> {
    vec![
        empty_dir(SIDECAR_VOLUME),
        Volume {
            name: CONFIG_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&cluster.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir(SERVER_CONFIG_VOLUME),
        Volume {
            name: CREDENTIALS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::credentials_secret(&cluster.name)),
                // Readable by the mysql group (fsGroup) only.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir(RUN_VOLUME),
        empty_dir(TMP_VOLUME),
        api_access(),
    ]
}

/// Where the agent finds its API token, CA and namespace (where every
/// Kubernetes client looks in a pod).
const API_ACCESS_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const API_ACCESS_VOLUME: &str = "api-access";

/// The agents' ServiceAccount token (rotated by the kubelet), the cluster's
/// CA and the namespace, as a volume only the agent container mounts.
fn api_access() -> Volume {
    Volume {
        name: API_ACCESS_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        expiration_seconds: Some(3600),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            ..KeyToPath::default()
                        }]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_owned(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".to_owned(),
                                ..ObjectFieldSelector::default()
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

fn volume_claim_template(cluster: &ValidatedCluster) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(cluster.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: cluster.storage.class.class_name().map(str::to_owned),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    cluster.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Prefer a node of its own for every instance; required would leave pods
/// Pending on small clusters during a drain.
fn default_affinity(cluster: &ValidatedCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(cluster.selector()),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// Spread instances evenly over zones: an EBS volume lives in one zone, so
/// where an instance first lands is where it stays.
fn default_zone_spread(cluster: &ValidatedCluster) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE_LABEL.to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(cluster.selector()),
            ..LabelSelector::default()
        }),
        ..TopologySpreadConstraint::default()
    }]
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn small_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".to_owned())),
            ("memory".to_owned(), Quantity("16Mi".to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// An HTTP check against the agent. By number: a named port is looked up in
/// the probing container only, and the mysqld container does not declare it.
fn http_get(path: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::Int(i32::from(AGENT_PORT)),
        ..HTTPGetAction::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, MYSQL_PRODUCTION, SINGLE, validated};

    fn spec(sts: &StatefulSet) -> &StatefulSetSpec {
        sts.spec.as_ref().expect("spec")
    }

    fn pod(sts: &StatefulSet) -> &PodSpec {
        spec(sts).template.spec.as_ref().expect("pod spec")
    }

    fn container<'a>(sts: &'a StatefulSet, name: &str) -> &'a Container {
        let pod = pod(sts);
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("container {name}"))
    }

    fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("env {name}"))
    }

    #[test]
    fn the_archives_credentials_secret_is_the_agents_and_the_init_steps_environment_alone() {
        let plain = build(&validated(BASIC));
        assert!(pod(&plain).containers.iter().all(|c| c.env_from.is_none()));
        let yaml = format!(
            "{BASIC}\n  backup:\n    schedule: \"0 3 * * *\"\n    archive: {{bucket: b, credentialsSecret: s3-keys}}\n"
        );
        let sts = build(&validated(&yaml));
        let from = container(&sts, "agent")
            .env_from
            .as_ref()
            .and_then(|f| f.first())
            .and_then(|f| f.secret_ref.as_ref())
            .map(|r| (r.name.clone(), r.optional));
        assert_eq!(from, Some(("s3-keys".to_owned(), Some(false))));
        assert_eq!(
            container(&sts, "init").env_from,
            container(&sts, "agent").env_from,
            "the init step replays a restore to a point from the archive"
        );
        assert!(container(&sts, "mysqld").env_from.is_none());
    }

    #[test]
    fn replicas_service_and_selector_follow_the_cluster() {
        let sts = build(&validated(BASIC));
        assert_eq!(sts.metadata.name.as_deref(), Some("orders"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("shop"));
        let s = spec(&sts);
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.service_name.as_deref(), Some("orders"));
        assert_eq!(
            s.selector.match_labels,
            Some(names::selector_labels("orders"))
        );
        let template_labels = s
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("labels");
        for (k, v) in names::selector_labels("orders") {
            assert_eq!(
                template_labels.get(&k),
                Some(&v),
                "template must match the selector"
            );
        }
        let owner = &sts.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("MySQLCluster", "orders", Some(true))
        );
    }

    #[test]
    fn a_deleted_primary_holds_its_server_up_for_the_switchover_within_the_grace_period() {
        let sts = build(&validated(BASIC));
        for name in ["mysqld", "agent"] {
            let c = container(&sts, name);
            let hook = c
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
                .and_then(|h| h.exec.as_ref())
                .and_then(|e| e.command.clone())
                .unwrap_or_else(|| panic!("{name} has a preStop hook"));
            assert_eq!(hook[..2], [SIDECAR_BIN.to_owned(), "pre-stop".to_owned()]);
            assert!(
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == SIDECAR_BIN_DIR),
                "{name} can run the hook"
            );
        }
        assert!(
            i64::try_from(PRE_STOP_SECONDS).unwrap() + 20 <= TERMINATION_GRACE_SECONDS,
            "the server still gets its SIGTERM in time"
        );
        assert_eq!(
            pod(&sts).termination_grace_period_seconds,
            Some(TERMINATION_GRACE_SECONDS)
        );
        assert_eq!(env(container(&sts, "mysqld"), "POD_NAME").name, "POD_NAME");
    }

    #[test]
    fn updates_are_driven_by_the_operator_and_volumes_are_kept() {
        let sts = build(&validated(BASIC));
        let s = spec(&sts);
        assert_eq!(
            s.update_strategy.as_ref().and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        let retention = s
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("retention");
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    }

    #[test]
    fn volume_claims_use_the_managed_ebs_class() {
        let sts = build(&validated(BASIC));
        let vct = &spec(&sts)
            .volume_claim_templates
            .as_ref()
            .expect("templates")[0];
        assert_eq!(vct.metadata.name.as_deref(), Some("data"));
        let claim = vct.spec.as_ref().expect("claim spec");
        assert_eq!(
            claim.storage_class_name.as_deref(),
            Some("ebisu-shop-orders")
        );
        assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        let size = claim
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.clone());
        assert_eq!(size.as_deref(), Some("20Gi"));
    }

    #[test]
    fn volume_claims_use_a_named_class_or_the_default() {
        let named = build(&validated(MYSQL_PRODUCTION));
        let claim = |sts: &StatefulSet| {
            spec(sts)
                .volume_claim_templates
                .as_ref()
                .expect("templates")[0]
                .spec
                .clone()
                .expect("spec")
        };
        assert_eq!(
            claim(&named).storage_class_name.as_deref(),
            Some("io2-fast")
        );
        assert_eq!(claim(&build(&validated(SINGLE))).storage_class_name, None);
    }

    #[test]
    fn server_runs_with_an_explicit_command_and_our_config() {
        let sts = build(&validated(BASIC));
        let mysqld = container(&sts, "mysqld");
        assert_eq!(mysqld.image.as_deref(), Some("mariadb:10.11"));
        assert_eq!(
            mysqld.command,
            Some(vec![
                "mariadbd".to_owned(),
                "--defaults-file=/etc/ebisu/server/my.cnf".to_owned()
            ])
        );
        let production = build(&validated(MYSQL_PRODUCTION));
        let mysqld = container(&production, "mysqld");
        assert_eq!(mysqld.image.as_deref(), Some("percona/percona-server:8.4"));
        assert_eq!(
            mysqld.command.as_ref().map(|c| c[0].as_str()),
            Some("mysqld")
        );
        assert_eq!(
            mysqld
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(|r| r["memory"].0.as_str()),
            Some("16Gi")
        );
    }

    #[test]
    fn readiness_asks_the_agent_whether_the_server_serves() {
        let sts = build(&validated(BASIC));
        let probe = container(&sts, "mysqld")
            .readiness_probe
            .clone()
            .expect("readiness");
        let get = probe.http_get.expect("http");
        assert_eq!(get.path.as_deref(), Some("/readyz"));
        assert_eq!(
            get.port,
            IntOrString::Int(9080),
            "by number: mysqld does not declare the agent port"
        );
    }

    #[test]
    fn sidecar_is_installed_then_runs_init_and_agent_in_the_server_image() {
        let sts = build(&validated(BASIC));
        let p = pod(&sts);
        let init_names: Vec<&str> = p
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(init_names, vec!["install-sidecar", "init"]);
        assert_eq!(
            container(&sts, "init")
                .termination_message_policy
                .as_deref(),
            Some("FallbackToLogsOnError"),
            "a failed init's reason reaches the pod status, where the operator reads it"
        );
        assert_eq!(
            container(&sts, "install-sidecar").image.as_deref(),
            Some("ghcr.io/ebisu/sidecar:test")
        );
        for name in ["init", "agent"] {
            let c = container(&sts, name);
            assert_eq!(
                c.image.as_deref(),
                Some("mariadb:10.11"),
                "{name} uses the server's tools"
            );
            assert_eq!(c.command.as_ref().map(|c| c[0].as_str()), Some(SIDECAR_BIN));
            assert_eq!(env(c, "EBISU_SERVER_ID_BASE").value.as_deref(), Some("100"));
            assert_eq!(env(c, "EBISU_FLAVOR").value.as_deref(), Some("mariadb"));
            let pod_name = env(c, "POD_NAME")
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            assert_eq!(pod_name, Some("metadata.name"));
        }
    }

    #[test]
    fn credentials_are_files_not_environment() {
        let sts = build(&validated(BASIC));
        for c in pod(&sts)
            .containers
            .iter()
            .chain(pod(&sts).init_containers.iter().flatten())
        {
            for e in c.env.iter().flatten() {
                assert!(
                    e.value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .is_none(),
                    "{} exposes a secret in env {}",
                    c.name,
                    e.name
                );
            }
        }
        let secret = pod(&sts)
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.secret.clone())
            .expect("secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("orders-credentials"));
        assert_eq!(secret.default_mode, Some(0o440));
        assert!(
            container(&sts, "mysqld")
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.mount_path != CREDENTIALS_DIR)
        );
    }

    #[test]
    fn pods_run_unprivileged_without_api_access() {
        let sts = build(&validated(BASIC));
        let p = pod(&sts);
        assert_eq!(p.automount_service_account_token, Some(false));
        let sc = p.security_context.as_ref().expect("pod security");
        assert_eq!(
            (sc.run_as_non_root, sc.run_as_user, sc.fs_group),
            (Some(true), Some(999), Some(999))
        );
        for c in p
            .containers
            .iter()
            .chain(p.init_containers.iter().flatten())
        {
            let sc = c.security_context.as_ref().expect("container security");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        }
    }

    #[test]
    fn instances_spread_over_zones_and_nodes_by_default() {
        let sts = build(&validated(BASIC));
        let p = pod(&sts);
        let spread = &p.topology_spread_constraints.as_ref().expect("spread")[0];
        assert_eq!(spread.topology_key, ZONE_LABEL);
        assert_eq!(spread.max_skew, 1);
        let anti = p
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .expect("anti-affinity");
        let term = &anti
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .expect("preferred")[0];
        assert_eq!(
            term.pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
    }

    #[test]
    fn pod_overrides_are_applied() {
        let sts = build(&validated(MYSQL_PRODUCTION));
        let p = pod(&sts);
        assert_eq!(
            p.tolerations.as_ref().map(|t| t[0].key.clone()),
            Some(Some("dedicated".to_owned()))
        );
        assert_eq!(
            p.node_selector
                .as_ref()
                .map(|n| n["workload"].clone())
                .as_deref(),
            Some("database")
        );
        let labels = spec(&sts)
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels["ebisu.dev/cluster"], "ledger");
        let init = container(&sts, "init");
        assert_eq!(
            env(init, "EBISU_CLONE_RATE_LIMIT").value.as_deref(),
            Some("209715200")
        );
    }
}
