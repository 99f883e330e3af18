//! One pod's life on its node: network, volumes, init containers in order,
//! containers with probes and restarts, status reports, and graceful
//! deletion (preStop, SIGTERM, grace period, SIGKILL, cleanup, then the pod
//! object's final removal with grace 0).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use tokio::sync::{mpsc, watch};

use super::container::{self, ContainerEvent, Runtime, SharedRun, log_path, update, waiting};
use super::launch::{BindMount, LaunchSpec};
use super::volumes::{self, PodVolumes, VolumeContext, VolumeError};
use super::{Agent, env, images, probe, status};
use crate::layout::NodeSpec;
use crate::network::{self, PodNetwork};

/// A request to stop the pod.
#[derive(Debug, Clone, Copy)]
pub struct Deletion {
    /// The grace period.
    pub grace: Duration,
    /// Whether the pod object still exists and must be removed at the end.
    pub delete_object: bool,
}

/// What a pod task shares with the agent (which freezes the pod's
/// processes and cuts its network when its node is stopped).
#[derive(Debug, Clone, Default)]
pub struct PodSlots {
    /// The pod's network, once created.
    pub network: Arc<Mutex<Option<PodNetwork>>>,
    /// Its containers' states.
    pub runs: Arc<Mutex<Vec<SharedRun>>>,
}

/// What the agent keeps about a running pod task.
#[derive(Debug)]
pub struct PodHandle {
    /// The node the pod runs on.
    pub node: String,
    /// Asks the task to stop.
    pub deleting: watch::Sender<Option<Deletion>>,
    /// Shared with the task.
    pub slots: PodSlots,
}

/// The pod's directory under the state directory.
pub fn pod_dir(agent: &Agent, pod: &Pod) -> PathBuf {
    agent.layout.pods().join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    ))
}

struct Task {
    agent: Arc<Agent>,
    node: NodeSpec,
    dir: PathBuf,
    deleting: watch::Receiver<Option<Deletion>>,
    slots: PodSlots,
    transitions: status::Transitions,
    last_status: Option<serde_json::Value>,
    start_time: Time,
    failed: Option<String>,
    initialized: bool,
    last_event: Option<String>,
    /// Events from container supervisors (probe failures, kills).
    container_events: (
        mpsc::UnboundedSender<ContainerEvent>,
        mpsc::UnboundedReceiver<ContainerEvent>,
    ),
}

/// Runs the pod until it is deleted.
pub async fn run(
    agent: Arc<Agent>,
    pod: Pod,
    node: NodeSpec,
    deleting: watch::Receiver<Option<Deletion>>,
    slots: PodSlots,
) {
    let dir = pod_dir(&agent, &pod);
    let mut task = Task {
        agent,
        node,
        dir,
        deleting,
        slots,
        transitions: status::Transitions::default(),
        last_status: None,
        start_time: Time(Timestamp::now()),
        failed: None,
        initialized: false,
        last_event: None,
        container_events: mpsc::unbounded_channel(),
    };
    task.lifecycle(pod).await;
}

fn spec_containers(pod: &Pod) -> (Vec<Container>, Vec<Container>) {
    let spec = pod.spec.clone().unwrap_or_default();
    (spec.init_containers.unwrap_or_default(), spec.containers)
}

impl Task {
    fn paused(&self) -> bool {
        self.agent.is_stopped(&self.node.name)
    }

    fn deletion(&self) -> Option<Deletion> {
        *self.deleting.borrow()
    }

    async fn event(&mut self, pod: &Pod, type_: EventType, reason: &str, note: String) {
        let key = format!("{reason}:{note}");
        if self.last_event.as_deref() == Some(key.as_str()) {
            return;
        }
        self.last_event = Some(key);
        self.agent
            .event(pod, &self.node.name, type_, reason, note)
            .await;
    }

    /// The newest version of the pod from the cache (labels change, e.g. roles).
    fn fresh(&self, pod: &Pod) -> Pod {
        self.agent
            .stores
            .pods
            .state()
            .into_iter()
            .find(|p| p.uid() == pod.uid())
            .map_or_else(|| pod.clone(), |p| (*p).clone())
    }

    async fn report(
        &mut self,
        pod: &Pod,
        init: &[(Container, SharedRun)],
        main: &[(Container, SharedRun)],
    ) {
        if self.paused() || self.deletion().is_some_and(|d| !d.delete_object) {
            return;
        }
        let ip = self
            .slots
            .network
            .lock()
            .ok()
            .and_then(|n| n.as_ref().map(|n| n.ip.clone()));
        let host_ip = network::node_address(self.node.index);
        let pod = self.fresh(pod);
        let observed = status::Observed {
            pod: &pod,
            pod_ip: ip.as_deref(),
            host_ip: &host_ip,
            init: init
                .iter()
                .map(|(c, r)| (c, container::snapshot(r)))
                .collect(),
            containers: main
                .iter()
                .map(|(c, r)| (c, container::snapshot(r)))
                .collect(),
            initialized: self.initialized,
            failed: self.failed.clone(),
            start_time: &self.start_time,
        };
        let body = status::compute(&observed, &mut self.transitions);
        // Others write pod status too (the node controller marks pods of an
        // unreachable node not Ready): compare with what the pod says now.
        if self.last_status.as_ref() == Some(&body) && status::agrees(&pod, &body) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => self.last_status = Some(body),
            Err(error) => tracing::debug!(pod = %pod.name_any(), %error, "status"),
        }
    }

    async fn lifecycle(&mut self, pod: Pod) {
        let (init_specs, main_specs) = spec_containers(&pod);
        let init: Vec<(Container, SharedRun)> = init_specs
            .into_iter()
            .map(|c| (c, SharedRun::default()))
            .collect();
        let main: Vec<(Container, SharedRun)> = main_specs
            .into_iter()
            .map(|c| (c, SharedRun::default()))
            .collect();
        if let Ok(mut slot) = self.slots.runs.lock() {
            slot.extend(init.iter().map(|(_, r)| r.clone()));
            slot.extend(main.iter().map(|(_, r)| r.clone()));
        }
        let first_wait = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        for (_, run) in &init {
            update(run, |r| r.state = waiting("PodInitializing", None));
        }
        for (_, run) in &main {
            update(run, |r| r.state = waiting(first_wait, None));
        }
        let _ = std::fs::create_dir_all(self.dir.join("logs"));

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut volumes = PodVolumes::default();
        let mut supervisors = Vec::new();
        if let Some(network) = self.start_network(&pod).await {
            self.report(&pod, &init, &main).await;
            if let Some(v) = self.mount_volumes(&pod, &init, &main).await {
                volumes = v;
                if self
                    .run_init(&pod, &network, &volumes, &init, &main, stop_rx.clone())
                    .await
                {
                    self.initialized = true;
                    supervisors = self
                        .start_containers(&pod, &network, &volumes, &main, &stop_rx)
                        .await;
                }
            }
        }
        // Report until deletion is requested.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while self.deletion().is_none() {
            self.report(&pod, &init, &main).await;
            while let Ok((reason, message)) = self.container_events.1.try_recv() {
                if !self.paused() {
                    self.agent
                        .event(&pod, &self.node.name, EventType::Warning, reason, message)
                        .await;
                }
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.deleting.changed() => {}
            }
        }
        let deletion = self.deletion().unwrap_or(Deletion {
            grace: Duration::ZERO,
            delete_object: false,
        });
        let _ = stop_tx.send(true);
        self.terminate(&pod, &main, &volumes, deletion, supervisors)
            .await;
    }

    async fn start_network(&mut self, pod: &Pod) -> Option<PodNetwork> {
        let uid = pod.uid().unwrap_or_default();
        loop {
            if self.deletion().is_some() {
                return None;
            }
            let Some(ip) = self.agent.allocate_ip(&self.node, &uid) else {
                self.event(
                    pod,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    "no free pod address on the node".to_owned(),
                )
                .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            };
            let network = PodNetwork::new(&uid, &ip);
            match network.create().await {
                Ok(()) => {
                    if let Ok(mut slot) = self.slots.network.lock() {
                        *slot = Some(network.clone());
                    }
                    return Some(network);
                }
                Err(error) => {
                    network.delete().await;
                    self.event(
                        pod,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        error.to_string(),
                    )
                    .await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    async fn mount_volumes(
        &mut self,
        pod: &Pod,
        init: &[(Container, SharedRun)],
        main: &[(Container, SharedRun)],
    ) -> Option<PodVolumes> {
        loop {
            if self.deletion().is_some() {
                return None;
            }
            if !self.paused() {
                let agent = self.agent.clone();
                let ctx = VolumeContext {
                    client: &agent.client,
                    stores: &agent.stores,
                    layout: &agent.layout,
                    pod_dir: &self.dir,
                    node: &self.node.name,
                    attachments: &agent.attachments,
                    ec2: &agent.ec2,
                    zone: &self.node.zone,
                };
                match volumes::prepare(&ctx, pod).await {
                    Ok(v) => return Some(v),
                    Err(VolumeError::Waiting { reason, message }) => {
                        self.event(pod, EventType::Warning, reason, message).await;
                    }
                    Err(error) => {
                        self.event(pod, EventType::Warning, "FailedMount", error.to_string())
                            .await;
                    }
                }
                self.report(pod, init, main).await;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = self.deleting.changed() => {}
            }
        }
    }

    /// Builds a container's runtime, or the waiting reason that stops it.
    async fn runtime(
        &self,
        pod: &Pod,
        network: &PodNetwork,
        volumes: &PodVolumes,
        c: &Container,
    ) -> Result<Runtime, (&'static str, String)> {
        let images::Resolved {
            argv,
            root,
            image_id,
        } = images::resolve(
            &self.agent.layout.images(),
            c.image.as_deref().unwrap_or_default(),
            c.command.as_deref().unwrap_or_default(),
            c.args.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(|e| ("ErrImagePull", e.to_string()))?;
        let pod = self.fresh(pod);
        let mut env = env::resolve(&self.agent.client, &pod, c)
            .await
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        // Kubernetes expands $(VAR) in command and args too.
        let argv: Vec<String> = argv.iter().map(|a| env::expand(a, &env)).collect();
        let spec = pod.spec.clone().unwrap_or_default();
        let psc = spec.security_context.clone().unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let mut groups: Vec<i64> = psc.fs_group.into_iter().collect();
        groups.extend(psc.supplemental_groups.clone().unwrap_or_default());
        let ns = pod.namespace().unwrap_or_default();
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some(base) = volumes.paths.get(&m.name) else {
                return Err((
                    "CreateContainerConfigError",
                    format!("volume \"{}\" not found", m.name),
                ));
            };
            let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let source = base.join(sub);
                    if !source.exists() {
                        let _ = std::fs::create_dir_all(&source);
                    }
                    source
                }
                None => base.clone(),
            };
            mounts.push(BindMount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only == Some(true),
            });
        }
        let hosts = self.agent.layout.hosts_file(&ns);
        if !hosts.exists() {
            let _ = std::fs::create_dir_all(hosts.parent().unwrap_or(&self.dir));
            let _ = std::fs::write(&hosts, "127.0.0.1 localhost\n");
        }
        mounts.push(BindMount {
            source: hosts,
            target: "/etc/hosts".into(),
            read_only: true,
        });
        mounts.push(BindMount {
            source: self.agent.layout.resolv_conf(),
            target: "/etc/resolv.conf".into(),
            read_only: true,
        });
        // Parents before children; a mount over an ancestor of the state
        // directory (such as /tmp) last, or it would hide the sources below it.
        let state = self.agent.layout.root().to_owned();
        mounts.sort_by_key(|m| (state.starts_with(&m.target), m.target.components().count()));
        env.push((
            "HOSTNAME".to_owned(),
            spec.hostname.clone().unwrap_or_else(|| pod.name_any()),
        ));
        let grace = Duration::from_secs(
            u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30).max(0)).unwrap_or(30),
        );
        Ok(Runtime {
            netns: network.netns.clone(),
            ip: network.ip.clone(),
            pod_dir: self.dir.clone(),
            log: log_path(&self.dir, &c.name),
            launch: LaunchSpec {
                hostname: spec.hostname.clone().unwrap_or_else(|| pod.name_any()),
                mounts,
                env,
                working_dir: c.working_dir.clone(),
                uid: csc.run_as_user.or(psc.run_as_user),
                gid: csc.run_as_group.or(psc.run_as_group),
                groups,
                argv,
                created_log: Some(self.agent.layout.created_mount_points()),
                root,
            },
            container: c.clone(),
            grace,
            events: self.container_events.0.clone(),
            image_id,
        })
    }

    /// Runs init containers in order; true when all succeeded.
    async fn run_init(
        &mut self,
        pod: &Pod,
        network: &PodNetwork,
        volumes: &PodVolumes,
        init: &[(Container, SharedRun)],
        main: &[(Container, SharedRun)],
        mut stop: watch::Receiver<bool>,
    ) -> bool {
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_owned());
        for (c, run) in init {
            let mut backoff = Duration::from_secs(1);
            loop {
                if self.deletion().is_some() {
                    return false;
                }
                let rt = match self.runtime(pod, network, volumes, c).await {
                    Ok(rt) => {
                        container::update(run, |r| r.image_id.clone_from(&rt.image_id));
                        rt
                    }
                    Err((reason, message)) => {
                        self.cannot_start(pod, run, reason, message).await;
                        self.report(pod, init, main).await;
                        if !self.wait_or_deleted(Duration::from_secs(5)).await {
                            return false;
                        }
                        continue;
                    }
                };
                let runner = container::run_once(&rt, run, &mut stop);
                tokio::pin!(runner);
                let code = loop {
                    tokio::select! {
                        code = &mut runner => break code,
                        () = tokio::time::sleep(Duration::from_secs(1)) => self.report(pod, init, main).await,
                        _ = self.deleting.changed() => {
                            if self.deletion().is_some() {
                                // run_once stops it when the stop flag is raised by the caller;
                                // here we only need to stop waiting.
                                return false;
                            }
                        }
                    }
                };
                if code == Some(0) {
                    break;
                }
                if policy == "Never" {
                    self.failed = Some("Failed".to_owned());
                    self.report(pod, init, main).await;
                    return false;
                }
                update(run, |r| {
                    r.last_state = Some(r.state.clone());
                    r.state = waiting(
                        "CrashLoopBackOff",
                        Some(format!(
                            "back-off {}s restarting failed container={}",
                            backoff.as_secs(),
                            c.name
                        )),
                    );
                });
                self.report(pod, init, main).await;
                if !self.wait_or_deleted(backoff).await {
                    return false;
                }
                update(run, |r| r.restart_count += 1);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        true
    }

    /// Records why a container cannot start (image, config) as its waiting
    /// state and as an event, like the kubelet's `Failed` for image pulls.
    async fn cannot_start(
        &mut self,
        pod: &Pod,
        run: &SharedRun,
        reason: &'static str,
        message: String,
    ) {
        update(run, |r| r.state = waiting(reason, Some(message.clone())));
        let event_reason = if reason == "ErrImagePull" {
            "Failed"
        } else {
            reason
        };
        self.event(pod, EventType::Warning, event_reason, message)
            .await;
    }

    async fn wait_or_deleted(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = self.deleting.changed() => {}
        }
        self.deletion().is_none()
    }

    async fn start_containers(
        &mut self,
        pod: &Pod,
        network: &PodNetwork,
        volumes: &PodVolumes,
        main: &[(Container, SharedRun)],
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_owned());
        let mut handles = Vec::new();
        for (c, run) in main {
            match self.runtime(pod, network, volumes, c).await {
                Ok(rt) => {
                    container::update(run, |r| r.image_id.clone_from(&rt.image_id));
                    let agent = self.agent.clone();
                    let node = self.node.name.clone();
                    handles.push(tokio::spawn(container::supervise(
                        rt,
                        run.clone(),
                        policy.clone(),
                        stop.clone(),
                        move || agent.is_stopped(&node),
                    )));
                }
                Err((reason, message)) => {
                    self.cannot_start(pod, run, reason, message).await;
                }
            }
        }
        handles
    }

    async fn terminate(
        &mut self,
        pod: &Pod,
        main: &[(Container, SharedRun)],
        volumes: &PodVolumes,
        deletion: Deletion,
        supervisors: Vec<tokio::task::JoinHandle<()>>,
    ) {
        let name = pod.name_any();
        tracing::info!(pod = %name, grace = ?deletion.grace, "stopping pod");
        let deadline = tokio::time::Instant::now() + deletion.grace;
        // preStop hooks run while the containers still serve, within the grace period.
        let network = self.slots.network.lock().ok().and_then(|n| n.clone());
        let mut hooks = Vec::new();
        for (c, run) in main {
            let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
                continue;
            };
            let Some(pid) = container::snapshot(run).pid else {
                continue;
            };
            let launch = self
                .runtime(
                    pod,
                    network.as_ref().unwrap_or(&PodNetwork::new("", "")),
                    volumes,
                    c,
                )
                .await
                .ok()
                .map(|rt| rt.launch);
            let ip = network.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
            let c = c.clone();
            hooks.push(async move { pre_stop(&handler, &c, &ip, pid, launch).await });
        }
        let _ = tokio::time::timeout_at(deadline, futures::future::join_all(hooks)).await;
        let pids: Vec<u32> = main
            .iter()
            .filter_map(|(_, r)| container::snapshot(r).pid)
            .collect();
        for pid in &pids {
            crate::command::signal_group(*pid, "TERM").await;
        }
        while tokio::time::Instant::now() < deadline
            && pids.iter().any(|p| crate::command::pid_alive(*p))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in &pids {
            crate::command::signal_group(*pid, "KILL").await;
        }
        for handle in supervisors {
            let _ = handle.await;
        }
        // Whatever is left in the pod's network namespace (forked helpers).
        if let Some(network) = network {
            for pid in network::namespace_pids(&network.netns).await {
                crate::command::signal_pid(pid, "KILL").await;
            }
            network.delete().await;
        }
        let freed = self.agent.attachments.release(
            &volumes.attached,
            &self.node.name,
            &volumes::pod_key(pod),
        );
        volumes::detach(&self.agent.ec2, &self.node.name, &freed).await;
        self.agent.release_ip(&pod.uid().unwrap_or_default());
        let _ = std::fs::remove_dir_all(&self.dir);
        if deletion.delete_object {
            delete_finally(&self.agent.client, pod).await;
        }
        tracing::info!(pod = %name, "pod stopped");
    }
}

/// The kubelet's last word on a pod: delete the object with grace 0, only
/// if it is still the same pod (uid precondition).
pub async fn delete_finally(client: &kube::Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(error) = api.delete(&pod.name_any(), &params).await {
        tracing::debug!(pod = %pod.name_any(), %error, "final delete");
    }
}

async fn pre_stop(
    handler: &LifecycleHandler,
    c: &Container,
    ip: &str,
    pid: u32,
    launch: Option<LaunchSpec>,
) {
    if let (Some(exec), Some(launch)) = (&handler.exec, launch) {
        let argv = exec.command.clone().unwrap_or_default();
        if let Err(error) = probe::exec_in(pid, &launch, &argv).await {
            tracing::warn!(container = %c.name, %error, "preStop hook");
        }
    } else if let Some(http) = &handler.http_get {
        let probe = k8s_openapi::api::core::v1::Probe {
            http_get: Some(http.clone()),
            timeout_seconds: Some(30),
            ..Default::default()
        };
        let launch = LaunchSpec {
            hostname: String::new(),
            mounts: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            uid: None,
            gid: None,
            groups: Vec::new(),
            argv: Vec::new(),
            created_log: None,
            root: None,
        };
        if let Err(error) = probe::run(&probe, c, ip, pid, &launch).await {
            tracing::warn!(container = %c.name, %error, "preStop hook");
        }
    } else if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(
            u64::try_from(sleep.seconds.max(0)).unwrap_or(0),
        ))
        .await;
    }
}
