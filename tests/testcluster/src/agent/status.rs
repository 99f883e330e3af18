//! A pod's status as the kubelet reports it, computed from its containers'
//! states: phase, podIP/hostIP, the PodScheduled, PodReadyToStartContainers,
//! Initialized, ContainersReady and Ready conditions, container statuses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, HostIP, Pod, PodCondition, PodIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::container::ContainerRun;

/// The conditions this agent owns (others, like DisruptionTarget, are kept).
const OURS: [&str; 5] = [
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

/// What the pod task knows when it reports.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The pod as last seen.
    pub pod: &'a Pod,
    /// Its address, once the network is up.
    pub pod_ip: Option<&'a str>,
    /// Its node's address.
    pub host_ip: &'a str,
    /// Init containers and their states.
    pub init: Vec<(&'a Container, ContainerRun)>,
    /// Containers and their states.
    pub containers: Vec<(&'a Container, ContainerRun)>,
    /// All init containers succeeded.
    pub initialized: bool,
    /// Phase forced by the pod task (Failed when an init container failed
    /// under restartPolicy Never).
    pub failed: Option<String>,
    /// When the pod task started.
    pub start_time: &'a Time,
}

/// Condition transitions, remembered so that a condition's
/// lastTransitionTime only changes when its status does.
#[derive(Debug, Default)]
pub struct Transitions(BTreeMap<String, (String, Time)>);

impl Transitions {
    fn condition(&mut self, type_: &str, ok: bool, reason: Option<&str>) -> PodCondition {
        let status = if ok { "True" } else { "False" }.to_owned();
        let entry = self
            .0
            .entry(type_.to_owned())
            .or_insert_with(|| (status.clone(), Time(Timestamp::now())));
        if entry.0 != status {
            *entry = (status.clone(), Time(Timestamp::now()));
        }
        PodCondition {
            type_: type_.to_owned(),
            status,
            reason: reason.filter(|_| !ok).map(str::to_owned),
            last_transition_time: Some(entry.1.clone()),
            ..PodCondition::default()
        }
    }
}

fn container_status(pod: &Pod, c: &Container, run: &ContainerRun) -> ContainerStatus {
    let running = run.state.running.is_some();
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: run.image_id.clone(),
        container_id: running
            .then(|| format!("ebisu://{}-{}", pod.uid().unwrap_or_default(), c.name)),
        ready: run.ready && running,
        started: Some(run.started && running),
        restart_count: run.restart_count,
        state: Some(run.state.clone()),
        last_state: run.last_state.clone(),
        ..ContainerStatus::default()
    }
}

/// The status to patch (a JSON merge patch body).
pub fn compute(observed: &Observed<'_>, transitions: &mut Transitions) -> Value {
    let pod = observed.pod;
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".to_owned());
    let all_ready = observed.initialized
        && !observed.containers.is_empty()
        && observed
            .containers
            .iter()
            .all(|(_, r)| r.ready && r.state.running.is_some());
    let any_started = observed.containers.iter().any(|(_, r)| {
        r.state.running.is_some() || r.state.terminated.is_some() || r.last_state.is_some()
    });
    let terminated: Vec<i32> = observed
        .containers
        .iter()
        .filter_map(|(_, r)| r.state.terminated.as_ref().map(|t| t.exit_code))
        .collect();
    let phase = if let Some(phase) = &observed.failed {
        phase.clone()
    } else if !observed.initialized || !any_started {
        "Pending".to_owned()
    } else if policy != "Always" && terminated.len() == observed.containers.len() {
        if terminated.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
        .to_owned()
    } else {
        "Running".to_owned()
    };

    let mut conditions: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !OURS.contains(&c.type_.as_str()))
        .collect();
    conditions.push(transitions.condition(
        "PodReadyToStartContainers",
        observed.pod_ip.is_some(),
        None,
    ));
    conditions.push(transitions.condition(
        "Initialized",
        observed.initialized,
        Some("ContainersNotInitialized"),
    ));
    conditions.push(transitions.condition(
        "ContainersReady",
        all_ready,
        Some("ContainersNotReady"),
    ));
    conditions.push(transitions.condition("Ready", all_ready, Some("ContainersNotReady")));
    conditions.push(transitions.condition("PodScheduled", true, None));

    let init: Vec<ContainerStatus> = observed
        .init
        .iter()
        .map(|(c, r)| {
            let mut s = container_status(pod, c, r);
            s.ready = r
                .state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0);
            s
        })
        .collect();
    let containers: Vec<ContainerStatus> = observed
        .containers
        .iter()
        .map(|(c, r)| container_status(pod, c, r))
        .collect();
    json!({
        "status": {
            "phase": phase,
            "hostIP": observed.host_ip,
            "hostIPs": [HostIP { ip: observed.host_ip.to_owned() }],
            "podIP": observed.pod_ip,
            "podIPs": observed.pod_ip.map(|ip| vec![PodIP { ip: ip.to_owned() }]),
            "startTime": observed.start_time,
            "conditions": conditions,
            "initContainerStatuses": init,
            "containerStatuses": containers,
        }
    })
}

/// Whether the pod's current status says what `body` (from [`compute`]) says
/// about phase and readiness.
pub fn agrees(pod: &Pod, body: &Value) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = |conditions: Option<&Vec<PodCondition>>| {
        conditions
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    let wanted: Option<Vec<PodCondition>> =
        serde_json::from_value(body["status"]["conditions"].clone()).ok();
    status.phase.as_deref() == body["status"]["phase"].as_str()
        && ready(status.conditions.as_ref()) == ready(wanted.as_ref())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning};

    use super::*;

    fn running(ready: bool) -> ContainerRun {
        ContainerRun {
            state: ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            },
            ready,
            started: true,
            ..ContainerRun::default()
        }
    }

    fn compute_for(containers: Vec<(&Container, ContainerRun)>, initialized: bool) -> Value {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u"},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}
        }))
        .unwrap();
        let start = Time(Timestamp::now());
        let observed = Observed {
            pod: &pod,
            pod_ip: Some("10.244.1.2"),
            host_ip: "10.244.0.10",
            init: Vec::new(),
            containers,
            initialized,
            failed: None,
            start_time: &start,
        };
        compute(&observed, &mut Transitions::default())
    }

    fn condition(body: &Value, type_: &str) -> String {
        body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn a_pod_is_ready_only_when_every_container_is() {
        let (a, b) = (
            Container {
                name: "a".into(),
                ..Container::default()
            },
            Container {
                name: "b".into(),
                ..Container::default()
            },
        );
        let body = compute_for(vec![(&a, running(true)), (&b, running(false))], true);
        assert_eq!(body["status"]["phase"], "Running");
        assert_eq!(condition(&body, "Ready"), "False");
        assert_eq!(condition(&body, "ContainersReady"), "False");
        let body = compute_for(vec![(&a, running(true)), (&b, running(true))], true);
        assert_eq!(condition(&body, "Ready"), "True");
        assert_eq!(body["status"]["podIP"], "10.244.1.2");
    }

    #[test]
    fn an_uninitialized_pod_is_pending_and_keeps_foreign_conditions() {
        let a = Container {
            name: "a".into(),
            ..Container::default()
        };
        let body = compute_for(vec![(&a, ContainerRun::default())], false);
        assert_eq!(body["status"]["phase"], "Pending");
        assert_eq!(condition(&body, "Initialized"), "False");
        assert_eq!(condition(&body, "DisruptionTarget"), "True");
        assert_eq!(condition(&body, "PodScheduled"), "True");
    }
}
