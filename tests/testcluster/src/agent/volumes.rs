//! A pod's volumes as host paths: emptyDir, configMap, secret, downwardAPI and
//! projected (service-account token, CA, namespace) are files under the pod's
//! directory; a PVC is its PV's volume directory, mounted only when no other
//! node holds the volume. An EBS volume is attached to the node's instance
//! at EC2 first (its zone, one instance at a time) and detached when the
//! node's last pod using it stops.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, Node, PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::env::field_value;
use crate::command;
use crate::ec2::Ec2;
use crate::layout::Layout;
use crate::stores::Stores;

/// Why volumes are not ready.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Not yet possible (claim unbound, volume attached elsewhere, missing
    /// ConfigMap): the pod waits and retries, with this reason and message.
    #[error("failed to mount volumes ({reason}): {message}")]
    Waiting {
        /// The event reason (`FailedMount`, `FailedAttachVolume`).
        reason: &'static str,
        /// What is missing.
        message: String,
    },
    /// Writing the volume's files failed.
    #[error("failed to write volume {volume}: {source}")]
    Io {
        /// The volume.
        volume: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The node holding a volume and the pods using it there.
type Holder = (String, BTreeSet<String>);

/// Which node holds each volume (by volume handle), and for which pods.
#[derive(Debug, Default, Clone)]
pub struct Attachments {
    inner: Arc<Mutex<HashMap<String, Holder>>>,
}

impl Attachments {
    /// Attaches `handle` to `node` for `pod`, unless another node holds it;
    /// then returns the pods holding it there. `take_over` moves it from
    /// another node regardless (EC2 has already moved the volume).
    pub fn attach(
        &self,
        handle: &str,
        node: &str,
        pod: &str,
        take_over: bool,
    ) -> Result<(), (String, Vec<String>)> {
        let Ok(mut map) = self.inner.lock() else {
            return Ok(());
        };
        let entry = map
            .entry(handle.to_owned())
            .or_insert_with(|| (node.to_owned(), BTreeSet::new()));
        if entry.0 != node {
            if !entry.1.is_empty() && !take_over {
                return Err((entry.0.clone(), entry.1.iter().cloned().collect()));
            }
            entry.1.clear();
        }
        entry.0 = node.to_owned();
        entry.1.insert(pod.to_owned());
        Ok(())
    }

    /// Releases `pod`'s hold on its volumes on `node`, and returns the
    /// handles no pod on `node` holds any more (to detach).
    pub fn release(&self, handles: &[String], node: &str, pod: &str) -> Vec<String> {
        let mut freed = Vec::new();
        if let Ok(mut map) = self.inner.lock() {
            for handle in handles {
                if let Some(entry) = map.get_mut(handle)
                    && entry.0 == node
                {
                    entry.1.remove(pod);
                    if entry.1.is_empty() {
                        map.remove(handle);
                        freed.push(handle.clone());
                    }
                }
            }
        }
        freed
    }
}

/// The prepared volumes of a pod.
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// Volume name -> host path.
    pub paths: BTreeMap<String, PathBuf>,
    /// Volume handles this pod attached (released when it stops).
    pub attached: Vec<String>,
}

fn io(volume: &str) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        volume: volume.to_owned(),
        source,
    }
}

fn waiting(reason: &'static str, message: String) -> VolumeError {
    VolumeError::Waiting { reason, message }
}

/// Writes `files` (relative path -> bytes) into `dir` with `mode`, group-owned
/// by `fs_group` when set.
fn write_files(
    volume: &str,
    dir: &Path,
    files: &[(String, Vec<u8>, i32)],
    fs_group: Option<i64>,
) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(volume))?;
    for (path, bytes, mode) in files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume))?;
        }
        std::fs::write(&file, bytes).map_err(io(volume))?;
        #[allow(clippy::cast_sign_loss)]
        std::fs::set_permissions(
            &file,
            std::fs::Permissions::from_mode(*mode as u32 & 0o7777),
        )
        .map_err(io(volume))?;
        if let Some(group) = fs_group {
            std::os::unix::fs::chown(&file, None, u32::try_from(group).ok()).map_err(io(volume))?;
        }
    }
    Ok(())
}

fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
) -> Vec<(String, Vec<u8>, i32)> {
    match items {
        Some(items) => items
            .iter()
            .filter_map(|item| {
                let bytes = data.get(&item.key)?.clone();
                Some((item.path.clone(), bytes, item.mode.unwrap_or(default_mode)))
            })
            .collect(),
        None => data
            .into_iter()
            .map(|(k, v)| (k, v, default_mode))
            .collect(),
    }
}

fn config_map_data(map: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = map
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        map.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    data
}

fn secret_data(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    data.extend(
        secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    data
}

/// Context for preparing one pod's volumes.
pub struct VolumeContext<'a> {
    /// API access.
    pub client: &'a Client,
    /// Cached claims and volumes.
    pub stores: &'a Stores,
    /// The cluster's files.
    pub layout: &'a Layout,
    /// The pod's directory.
    pub pod_dir: &'a Path,
    /// The pod's node.
    pub node: &'a str,
    /// Volume attachments.
    pub attachments: &'a Attachments,
    /// The EC2 API holding the EBS volumes.
    pub ec2: &'a Ec2,
    /// The node's zone.
    pub zone: &'a str,
}

impl std::fmt::Debug for VolumeContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeContext")
            .field("pod_dir", &self.pod_dir)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Prepares every volume of `pod`. On error, volumes attached so far are released.
pub async fn prepare(ctx: &VolumeContext<'_>, pod: &Pod) -> Result<PodVolumes, VolumeError> {
    let mut out = PodVolumes::default();
    let result = prepare_all(ctx, pod, &mut out).await;
    if result.is_err() {
        let freed = ctx
            .attachments
            .release(&out.attached, ctx.node, &pod_key(pod));
        detach(ctx.ec2, ctx.node, &freed).await;
    }
    result.map(|()| out)
}

/// How attachments name a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

async fn prepare_all(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    out: &mut PodVolumes,
) -> Result<(), VolumeError> {
    let ns = pod.namespace().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    for volume in spec.volumes.iter().flatten() {
        let dir = ctx.pod_dir.join("volumes").join(&volume.name);
        let path = prepare_one(ctx, pod, &ns, volume, &dir, fs_group, out).await?;
        out.paths.insert(volume.name.clone(), path);
    }
    Ok(())
}

async fn prepare_one(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    ns: &str,
    volume: &Volume,
    dir: &Path,
    fs_group: Option<i64>,
    out: &mut PodVolumes,
) -> Result<PathBuf, VolumeError> {
    let name = volume.name.as_str();
    if volume.empty_dir.is_some() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io(name))?;
            // emptyDir is world-writable, like the kubelet's.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .map_err(io(name))?;
        }
        return Ok(dir.to_owned());
    }
    if let Some(source) = &volume.host_path {
        return Ok(PathBuf::from(&source.path));
    }
    let secret_name = volume
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_default();
    let from_object = [
        volume.config_map.as_ref().map(|c| {
            (
                Source::ConfigMap(&c.name),
                c.items.as_ref(),
                c.optional,
                c.default_mode,
            )
        }),
        volume.secret.as_ref().map(|s| {
            (
                Source::Secret(&secret_name),
                s.items.as_ref(),
                s.optional,
                s.default_mode,
            )
        }),
    ];
    if let Some((source, items, optional, mode)) = from_object.into_iter().flatten().next() {
        let files = source_files(ctx, ns, source, items, optional, mode.unwrap_or(0o644)).await?;
        write_files(name, dir, &files, fs_group)?;
        return Ok(dir.to_owned());
    }
    if let Some(source) = &volume.downward_api {
        let mode = source.default_mode.unwrap_or(0o644);
        let files: Vec<_> = source
            .items
            .iter()
            .flatten()
            .filter_map(|item| {
                let value = field_value(pod, &item.field_ref.as_ref()?.field_path)?;
                Some((
                    item.path.clone(),
                    value.into_bytes(),
                    item.mode.unwrap_or(mode),
                ))
            })
            .collect();
        write_files(name, dir, &files, fs_group)?;
        return Ok(dir.to_owned());
    }
    if let Some(source) = &volume.projected {
        let mode = source.default_mode.unwrap_or(0o644);
        let mut files = Vec::new();
        for part in source.sources.iter().flatten() {
            if let Some(token) = &part.service_account_token {
                let value = service_account_token(
                    ctx.client,
                    pod,
                    token.expiration_seconds,
                    token.audience.clone(),
                )
                .await?;
                files.push((token.path.clone(), value.into_bytes(), mode));
            }
            let refs = [
                part.config_map
                    .as_ref()
                    .map(|c| (Source::ConfigMap(&c.name), c.items.as_ref(), c.optional)),
                part.secret
                    .as_ref()
                    .map(|s| (Source::Secret(&s.name), s.items.as_ref(), s.optional)),
            ];
            for (source, items, optional) in refs.into_iter().flatten() {
                files.extend(source_files(ctx, ns, source, items, optional, mode).await?);
            }
            if let Some(d) = &part.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(value) = item
                        .field_ref
                        .as_ref()
                        .and_then(|f| field_value(pod, &f.field_path))
                    {
                        files.push((
                            item.path.clone(),
                            value.into_bytes(),
                            item.mode.unwrap_or(mode),
                        ));
                    }
                }
            }
        }
        write_files(name, dir, &files, fs_group)?;
        return Ok(dir.to_owned());
    }
    if let Some(source) = &volume.persistent_volume_claim {
        return claim_dir(ctx, pod, ns, &source.claim_name, fs_group, out).await;
    }
    Err(waiting(
        "FailedMount",
        format!("volume \"{name}\": unsupported volume type in the test cluster"),
    ))
}

/// Where a volume's files come from.
enum Source<'a> {
    ConfigMap(&'a str),
    Secret(&'a str),
}

/// The files of a ConfigMap or Secret (selected `items`, or every key); an
/// optional missing source gives none, a required one makes the pod wait.
async fn source_files(
    ctx: &VolumeContext<'_>,
    ns: &str,
    source: Source<'_>,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    mode: i32,
) -> Result<Vec<(String, Vec<u8>, i32)>, VolumeError> {
    let (kind, name, data) = match source {
        Source::ConfigMap(name) => (
            "configmap",
            name,
            Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
                .get(name)
                .await
                .map(config_map_data),
        ),
        Source::Secret(name) => (
            "secret",
            name,
            Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .get(name)
                .await
                .map(secret_data),
        ),
    };
    match data {
        Ok(data) => Ok(select(data, items, mode)),
        Err(_) if optional == Some(true) => Ok(Vec::new()),
        Err(e) => Err(waiting(
            "FailedMount",
            format!("{kind} \"{name}\" not found: {e}"),
        )),
    }
}

async fn service_account_token(
    client: &Client,
    pod: &Pod,
    expiration: Option<i64>,
    audience: Option<String>,
) -> Result<String, VolumeError> {
    let ns = pod.namespace().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            // A day: pods of a test cluster never live long enough to need a refresh.
            expiration_seconds: Some(expiration.unwrap_or(3600).max(86_400)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let response = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            waiting(
                "FailedMount",
                format!("failed to fetch token for service account {sa}: {e}"),
            )
        })?;
    Ok(response.status.map(|s| s.token).unwrap_or_default())
}

async fn claim_dir(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    ns: &str,
    claim_name: &str,
    fs_group: Option<i64>,
    out: &mut PodVolumes,
) -> Result<PathBuf, VolumeError> {
    let claim: Option<PersistentVolumeClaim> = ctx
        .stores
        .claims
        .state()
        .into_iter()
        .find(|c| c.name_any() == claim_name && c.namespace().as_deref() == Some(ns))
        .map(|c| (*c).clone());
    let volume_name = claim
        .as_ref()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .and_then(|c| c.spec.as_ref()?.volume_name.clone())
        .ok_or_else(|| {
            waiting(
                "FailedMount",
                format!("persistentvolumeclaim \"{claim_name}\" is not bound"),
            )
        })?;
    let pv = ctx
        .stores
        .volumes
        .state()
        .into_iter()
        .find(|v| v.name_any() == volume_name)
        .ok_or_else(|| {
            waiting(
                "FailedMount",
                format!("persistentvolume \"{volume_name}\" not found"),
            )
        })?;
    let spec = pv.spec.clone().unwrap_or_default();
    let ebs = spec
        .csi
        .as_ref()
        .is_some_and(|c| c.driver == crate::provisioner::DRIVER);
    let (handle, dir) = if let Some(csi) = &spec.csi {
        (
            csi.volume_handle.clone(),
            ctx.layout.volumes().join(&csi.volume_handle),
        )
    } else if let Some(host) = &spec.host_path {
        (volume_name.clone(), PathBuf::from(&host.path))
    } else if let Some(local) = &spec.local {
        (volume_name.clone(), PathBuf::from(&local.path))
    } else {
        return Err(waiting(
            "FailedMount",
            format!("persistentvolume \"{volume_name}\" has no source the test cluster can mount"),
        ));
    };
    if ebs {
        attach_at_ec2(ctx, &volume_name, &handle).await?;
    }
    if let Err((node, pods)) = ctx
        .attachments
        .attach(&handle, ctx.node, &pod_key(pod), ebs)
    {
        return Err(waiting(
            "FailedAttachVolume",
            format!(
                "Multi-Attach error for volume \"{volume_name}\" Volume is already used by pod(s) {} on node {node}",
                pods.join(", ")
            ),
        ));
    }
    out.attached.push(handle);
    std::fs::create_dir_all(&dir).map_err(io(&volume_name))?;
    if let Some(group) = fs_group {
        give_to_group(&dir, group).await;
    }
    Ok(dir)
}

/// The taint that says a node is shut down for good (its volumes may be
/// detached at once).
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// What the attach/detach controller and the EBS CSI driver do before a
/// pod's volume is mounted: the volume must be in the node's zone and is
/// attached to the node's instance. One attached to another instance
/// waits (Multi-Attach), unless that node carries the out-of-service taint:
/// then it is force-detached there first, as Kubernetes does for a node
/// declared shut down.
async fn attach_at_ec2(
    ctx: &VolumeContext<'_>,
    volume_name: &str,
    volume_id: &str,
) -> Result<(), VolumeError> {
    let failed = |e: crate::ec2::Ec2Error| waiting("FailedAttachVolume", e.to_string());
    let volume = ctx.ec2.volume(volume_id).await.map_err(failed)?;
    let zone = volume.availability_zone().unwrap_or_default();
    if zone != ctx.zone {
        return Err(waiting(
            "FailedAttachVolume",
            format!(
                "volume {volume_id} is in zone {zone} and node {} in {}: an EBS volume attaches only in its own zone",
                ctx.node, ctx.zone
            ),
        ));
    }
    let mine = ctx.ec2.instance(ctx.node).map_err(failed)?;
    match crate::ec2::attached_instance(&volume) {
        Some(instance) if instance == mine => return Ok(()),
        Some(instance) => {
            let holder = ctx.ec2.node_of(instance).unwrap_or(instance).to_owned();
            if !out_of_service(ctx.client, &holder).await {
                return Err(waiting(
                    "FailedAttachVolume",
                    format!(
                        "Multi-Attach error for volume \"{volume_name}\" Volume is already exclusively attached to one node ({holder}, instance {instance}) and can't be attached to another"
                    ),
                ));
            }
            tracing::info!(volume = volume_id, node = %holder, "force-detaching from an out-of-service node");
            ctx.ec2
                .detach(volume_id, instance, true)
                .await
                .map_err(failed)?;
        }
        None => {}
    }
    ctx.ec2.attach(volume_id, ctx.node).await.map_err(failed)
}

async fn out_of_service(client: &Client, node: &str) -> bool {
    let api: Api<Node> = Api::all(client.clone());
    api.get(node).await.is_ok_and(|n| {
        n.spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == OUT_OF_SERVICE)
    })
}

/// Detaches volumes no pod on `node` uses any more from its instance.
pub async fn detach(ec2: &Ec2, node: &str, handles: &[String]) {
    let Ok(instance) = ec2.instance(node) else {
        return;
    };
    for handle in handles.iter().filter(|h| h.starts_with("vol-")) {
        // Already detached elsewhere (a fenced node's volume): nothing to do.
        if let Err(error) = ec2.detach(handle, instance, false).await {
            tracing::debug!(%error, "not detached");
        }
    }
}

/// The kubelet's fsGroup handling (OnRootMismatch): when the volume's root is
/// not yet owned by the group, chown everything to it, make it group-writable
/// and set the setgid bit on directories.
async fn give_to_group(dir: &Path, group: i64) {
    use std::os::unix::fs::MetadataExt;
    let gid = u32::try_from(group).unwrap_or(0);
    if std::fs::metadata(dir).is_ok_and(|m| m.gid() == gid) {
        return;
    }
    let path = dir.display().to_string();
    command::run_quiet("chgrp", &["-R", &gid.to_string(), &path]).await;
    command::run_quiet("chmod", &["-R", "g+rwX", &path]).await;
    command::run_quiet(
        "find",
        &[&path, "-type", "d", "-exec", "chmod", "g+s", "{}", "+"],
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_held_on_one_node_cannot_attach_on_another_until_released() {
        let attachments = Attachments::default();
        let v = || vec!["vol-1".to_owned()];
        assert!(
            attachments
                .attach("vol-1", "node-a1", "ns/p0", false)
                .is_ok()
        );
        // Another pod on the same node may share it (as RWO allows).
        assert!(
            attachments
                .attach("vol-1", "node-a1", "ns/p1", false)
                .is_ok()
        );
        let (node, pods) = attachments
            .attach("vol-1", "node-a2", "ns/p2", false)
            .unwrap_err();
        assert_eq!(node, "node-a1");
        assert_eq!(pods, ["ns/p0", "ns/p1"]);
        assert!(attachments.release(&v(), "node-a1", "ns/p0").is_empty());
        assert!(
            attachments
                .attach("vol-1", "node-a2", "ns/p2", false)
                .is_err()
        );
        // The last pod on the node frees the volume there: detach it.
        assert_eq!(attachments.release(&v(), "node-a1", "ns/p1"), v());
        assert!(
            attachments
                .attach("vol-1", "node-a2", "ns/p2", false)
                .is_ok()
        );
    }

    #[test]
    fn a_volume_moved_at_ec2_is_taken_over_and_the_old_node_frees_nothing() {
        let attachments = Attachments::default();
        let v = || vec!["vol-1".to_owned()];
        assert!(
            attachments
                .attach("vol-1", "node-a1", "ns/p0", false)
                .is_ok()
        );
        assert!(
            attachments
                .attach("vol-1", "node-a2", "ns/p0", true)
                .is_ok()
        );
        // The fenced node's pod stopping later must not detach it from a2.
        assert!(attachments.release(&v(), "node-a1", "ns/p0").is_empty());
        assert_eq!(attachments.release(&v(), "node-a2", "ns/p0"), v());
    }

    #[test]
    fn items_select_and_rename_keys_with_their_modes() {
        let data = BTreeMap::from([
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ]);
        let items = vec![KeyToPath {
            key: "b".to_owned(),
            path: "dir/b.txt".to_owned(),
            mode: Some(0o400),
        }];
        assert_eq!(
            select(data.clone(), Some(&items), 0o644),
            [("dir/b.txt".to_owned(), b"2".to_vec(), 0o400)]
        );
        assert_eq!(select(data, None, 0o440).len(), 2);
    }
}
