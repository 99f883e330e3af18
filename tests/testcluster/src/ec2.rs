//! The local EC2 API behind the cluster's machines and EBS volumes: moto's
//! server on the bridge address (so the operator's pod reaches it too), one
//! EC2 instance per node, and the volume calls the EBS CSI driver would make
//! (create, attach, detach, delete, resize), with the two constraints moto
//! does not enforce itself: a volume attaches only in its own zone, and to
//! one instance at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, Placement, ResourceType, Tag, TagSpecification,
    Volume, VolumeType,
};

use crate::layout::{BRIDGE_ADDR, EC2_PORT, NodeSpec};

/// The region of the local EC2 API (the zones are `us-east-1a/b/c`).
pub const REGION: &str = "us-east-1";
/// The static credentials moto accepts.
pub const ACCESS_KEY_ID: &str = "testing";
/// The static credentials moto accepts.
pub const SECRET_ACCESS_KEY: &str = "testing";
/// The tag naming an instance's node.
const NODE_TAG: &str = "Name";

/// Why an EC2 call failed.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// The call failed.
    #[error("failed to {action}: {message}")]
    Call {
        /// What we tried.
        action: String,
        /// EC2's error (code and message) or the transport's.
        message: String,
    },
    /// The node has no instance.
    #[error("failed to find the EC2 instance of node {0}")]
    NoInstance(String),
}

/// The endpoint of the local EC2 API.
pub fn endpoint() -> String {
    format!("http://{BRIDGE_ADDR}:{EC2_PORT}")
}

/// Where moto's server program is: `$EBISU_MOTO_SERVER`, else what
/// `tests/install-moto.sh --print-path` names.
pub fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("EBISU_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install-moto.sh");
    std::process::Command::new("bash")
        .arg(script)
        .arg("--print-path")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default()
}

fn call<E: std::error::Error + Send + Sync + 'static + ProvideErrorMetadata>(
    action: impl Into<String>,
) -> impl FnOnce(aws_sdk_ec2::error::SdkError<E>) -> Ec2Error {
    move |error| {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&error).to_string(),
        };
        Ec2Error::Call {
            action: action.into(),
            message,
        }
    }
}

/// Whether an EC2 error names a missing volume.
pub fn is_not_found(error: &Ec2Error) -> bool {
    matches!(error, Ec2Error::Call { message, .. } if message.starts_with("InvalidVolume.NotFound"))
}

/// A volume to create.
#[derive(Debug, Clone, Default)]
pub struct NewVolume {
    /// Its zone.
    pub zone: String,
    /// Its size in GiB.
    pub size_gib: i32,
    /// `gp3`, `io2`, ...
    pub volume_type: String,
    /// Provisioned IOPS.
    pub iops: Option<i32>,
    /// Throughput in MiB/s.
    pub throughput: Option<i32>,
    /// Encrypted at rest.
    pub encrypted: bool,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The cluster's EC2: a client and each node's instance id.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
    instances: BTreeMap<String, String>,
}

/// The SDK's HTTP client with rustls on ring (the TLS stack the rest of
/// the workspace uses).
pub fn http_client() -> aws_sdk_ec2::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A client of the local EC2 API.
pub fn client() -> Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .http_client(http_client())
        .credentials_provider(credentials())
        .build();
    Client::from_conf(config)
}

/// moto's static keys.
fn credentials() -> Credentials {
    Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        None,
        "ebisu-testcluster",
    )
}

/// An S3 client of the same local endpoint (moto serves S3 there too).
pub fn s3() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(REGION))
        .endpoint_url(endpoint())
        .force_path_style(true)
        .http_client(http_client())
        .credentials_provider(credentials())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl Ec2 {
    /// Runs one instance per node in its zone, tagged with the node's name.
    pub async fn start(nodes: &[NodeSpec]) -> Result<Self, Ec2Error> {
        let client = client();
        let mut instances = BTreeMap::new();
        for node in nodes {
            let out = client
                .run_instances()
                .image_id("ami-0ebisu0000000000")
                .instance_type(InstanceType::M5Large)
                .min_count(1)
                .max_count(1)
                .placement(Placement::builder().availability_zone(&node.zone).build())
                .tag_specifications(tags(
                    ResourceType::Instance,
                    &BTreeMap::from([(NODE_TAG.to_owned(), node.name.clone())]),
                ))
                .send()
                .await
                .map_err(call(format!("run the instance of node {}", node.name)))?;
            let id = out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .ok_or_else(|| Ec2Error::NoInstance(node.name.clone()))?;
            instances.insert(node.name.clone(), id.to_owned());
        }
        Ok(Self { client, instances })
    }

    /// The node's instance id.
    pub fn instance(&self, node: &str) -> Result<&str, Ec2Error> {
        self.instances
            .get(node)
            .map(String::as_str)
            .ok_or_else(|| Ec2Error::NoInstance(node.to_owned()))
    }

    /// The node whose instance is `instance`.
    pub fn node_of(&self, instance: &str) -> Option<&str> {
        self.instances
            .iter()
            .find(|(_, id)| id.as_str() == instance)
            .map(|(node, _)| node.as_str())
    }

    /// Each node's instance state (`running`, `stopped`, ...).
    pub async fn instance_states(&self) -> Result<BTreeMap<String, InstanceStateName>, Ec2Error> {
        let out = self
            .client
            .describe_instances()
            .set_instance_ids(Some(self.instances.values().cloned().collect()))
            .send()
            .await
            .map_err(call("describe the nodes' instances"))?;
        let mut states = BTreeMap::new();
        for instance in out.reservations().iter().flat_map(|r| r.instances()) {
            if let (Some(id), Some(state)) = (
                instance.instance_id(),
                instance.state().and_then(|s| s.name()),
            ) && let Some(node) = self.node_of(id)
            {
                states.insert(node.to_owned(), state.clone());
            }
        }
        Ok(states)
    }

    /// Starts a stopped node's instance (what a person or an autoscaler does).
    pub async fn start_instance(&self, node: &str) -> Result<(), Ec2Error> {
        let id = self.instance(node)?;
        self.client
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(call(format!("start instance {id}")))?;
        Ok(())
    }

    /// Creates a volume and returns its id.
    pub async fn create_volume(&self, new: &NewVolume) -> Result<String, Ec2Error> {
        let out = self
            .client
            .create_volume()
            .availability_zone(&new.zone)
            .size(new.size_gib)
            .volume_type(VolumeType::from(new.volume_type.as_str()))
            .set_iops(new.iops)
            .set_throughput(new.throughput)
            .encrypted(new.encrypted)
            .tag_specifications(tags(ResourceType::Volume, &new.tags))
            .send()
            .await
            .map_err(call(format!("create a volume in {}", new.zone)))?;
        out.volume_id()
            .map(str::to_owned)
            .ok_or_else(|| Ec2Error::Call {
                action: "create a volume".to_owned(),
                message: "no volume id in the answer".to_owned(),
            })
    }

    /// One volume.
    pub async fn volume(&self, id: &str) -> Result<Volume, Ec2Error> {
        let out = self
            .client
            .describe_volumes()
            .volume_ids(id)
            .send()
            .await
            .map_err(call(format!("describe volume {id}")))?;
        out.volumes()
            .first()
            .cloned()
            .ok_or_else(|| Ec2Error::Call {
                action: format!("describe volume {id}"),
                message: "InvalidVolume.NotFound: no such volume".to_owned(),
            })
    }

    /// Attaches a volume to the node's instance, on a device no other
    /// volume there uses (EC2 keys an instance's attachments by device).
    pub async fn attach(&self, volume: &str, node: &str) -> Result<(), Ec2Error> {
        let instance = self.instance(node)?;
        let attached = self
            .client
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(instance)
                    .build(),
            )
            .send()
            .await
            .map_err(call(format!("describe volumes attached to {instance}")))?;
        let used: Vec<&str> = attached
            .volumes()
            .iter()
            .flat_map(|v| v.attachments())
            .filter_map(|a| a.device())
            .collect();
        let device = ('a'..='z')
            .map(|c| format!("/dev/xvdb{c}"))
            .find(|d| !used.contains(&d.as_str()))
            .ok_or_else(|| Ec2Error::Call {
                action: format!("attach volume {volume} to {instance}"),
                message: "AttachmentLimitExceeded: no free device name".to_owned(),
            })?;
        self.client
            .attach_volume()
            .volume_id(volume)
            .instance_id(instance)
            .device(device)
            .send()
            .await
            .map_err(call(format!("attach volume {volume} to {instance}")))?;
        Ok(())
    }

    /// Detaches a volume from `instance` (forced: the instance is fenced).
    pub async fn detach(&self, volume: &str, instance: &str, force: bool) -> Result<(), Ec2Error> {
        self.client
            .detach_volume()
            .volume_id(volume)
            .instance_id(instance)
            .force(force)
            .send()
            .await
            .map_err(call(format!("detach volume {volume} from {instance}")))?;
        Ok(())
    }

    /// Deletes a volume.
    pub async fn delete_volume(&self, volume: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_volume()
            .volume_id(volume)
            .send()
            .await
            .map_err(call(format!("delete volume {volume}")))?;
        Ok(())
    }

    /// Grows a volume.
    pub async fn resize(&self, volume: &str, size_gib: i32) -> Result<(), Ec2Error> {
        self.client
            .modify_volume()
            .volume_id(volume)
            .size(size_gib)
            .send()
            .await
            .map_err(call(format!("resize volume {volume} to {size_gib} GiB")))?;
        Ok(())
    }
}

fn tags(resource: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

/// The instance a volume is attached to, if any.
pub fn attached_instance(volume: &Volume) -> Option<&str> {
    volume
        .attachments()
        .iter()
        .find(|a| {
            a.state()
                .is_some_and(|s| !matches!(s, aws_sdk_ec2::types::VolumeAttachmentState::Detached))
        })
        .and_then(|a| a.instance_id())
}

/// Bytes to whole GiB, rounded up (EBS sizes are whole GiB).
pub fn gib_ceil(bytes: u128) -> i32 {
    i32::try_from(bytes.div_ceil(1 << 30)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_whole_gib() {
        assert_eq!(gib_ceil(1 << 30), 1);
        assert_eq!(gib_ceil((1 << 30) + 1), 2);
        assert_eq!(gib_ceil(20_000_000_000), 19);
    }
}
