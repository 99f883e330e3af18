//! The cluster's EBS volumes at EC2 (aws-sdk-ec2): each instance's volume as
//! DescribeVolumes reports it (status), the tags that name its cluster,
//! namespace and instance (CreateTags), and the IOPS and throughput of
//! `spec.storage.ebs` applied to existing volumes (ModifyVolume).
//! Credentials come from the standard AWS chain (IRSA, EKS Pod Identity,
//! environment). Only volumes of the EBS CSI driver are looked at.

pub mod decide;
pub mod looks;

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, Tag, Volume, VolumeModification};
use ebisu_api::VolumeStatus;
use k8s_openapi::jiff::Timestamp;
use tracing::info;

use crate::build::storage_class::EBS_PROVISIONER;
use crate::clustering::Problem;
use crate::dereference::Observed;
use crate::validate::{StorageClassChoice, ValidatedCluster};
use decide::{Performance, Plan, Step, VolumeFacts};

/// Why an EC2 call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The call failed.
    #[error("failed to {action}: {message}")]
    Call {
        /// What we tried.
        action: String,
        /// EC2's error code and message, or the transport's.
        message: String,
    },
}

/// Maps a failed call to [`Error::Call`], with EC2's code and message when
/// it gave them.
pub(crate) fn call<E>(action: impl Into<String>) -> impl FnOnce(SdkError<E>) -> Error
where
    E: std::error::Error + Send + Sync + ProvideErrorMetadata + 'static,
{
    move |error| {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&error).to_string(),
        };
        Error::Call {
            action: action.into(),
            message,
        }
    }
}

/// An EC2 client from the standard AWS configuration chain, with rustls on
/// ring. `AWS_REGION` and `AWS_ENDPOINT_URL_EC2` are honoured as usual.
pub async fn client() -> Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    // Bounded calls: a fencing step runs inside a reconcile.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_timeout(std::time::Duration::from_secs(10))
        .build();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&config)
}

/// What the volumes pass found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Each instance's volume, by pod.
    pub volumes: BTreeMap<String, VolumeStatus>,
    /// What the operator cannot do about them now.
    pub problems: Vec<Problem>,
    /// Changes made (`pod`, what changed), for Events.
    pub modified: Vec<(String, String)>,
}

/// Each instance's EBS volume id, by pod, from its bound PV.
fn volume_ids(validated: &ValidatedCluster, observed: &Observed) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for claim in &observed.claims {
        let Some(name) = claim.metadata.name.as_deref() else {
            continue;
        };
        let prefix = format!("{}-", ebisu_api::names::DATA_VOLUME);
        let Some(pod) = name.strip_prefix(&prefix) else {
            continue;
        };
        if ebisu_api::names::ordinal_of(pod).is_none() || !pod.starts_with(&validated.name) {
            continue;
        }
        let csi = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_ref())
            .and_then(|v| observed.volumes.get(v))
            .and_then(|pv| pv.spec.as_ref()?.csi.as_ref())
            .filter(|csi| csi.driver == EBS_PROVISIONER);
        if let Some(csi) = csi {
            ids.insert(pod.to_owned(), csi.volume_handle.clone());
        }
    }
    ids
}

/// Looks at the cluster's volumes at EC2 and applies the tags and the
/// performance the spec asks for.
pub async fn reconcile(ec2: &Client, validated: &ValidatedCluster, observed: &Observed) -> Outcome {
    let ids = volume_ids(validated, observed);
    let mut outcome = Outcome::default();
    if ids.is_empty() {
        return outcome;
    }
    let mut facts = match describe(ec2, &ids).await {
        Ok(facts) => facts,
        Err(error) => {
            outcome
                .problems
                .push(Problem::Ec2Unavailable(error.to_string()));
            return outcome;
        }
    };
    let performance = match &validated.storage.class {
        StorageClassChoice::Managed { ebs, .. } => Some(Performance {
            volume_type: ebs.volume_type.as_str(),
            iops: ebs.iops,
            throughput: ebs.throughput,
        }),
        _ => None,
    };
    let plan: Plan = decide::plan(
        &validated.namespace,
        &validated.name,
        performance,
        &mut facts,
        Timestamp::now(),
    );
    for step in &plan.steps {
        match run(ec2, step).await {
            Ok(Some(done)) => outcome.modified.push(done),
            Ok(None) => {}
            Err(error) => outcome
                .problems
                .push(Problem::Ec2Unavailable(error.to_string())),
        }
    }
    for deferred in plan.deferred {
        outcome.problems.push(Problem::VolumeChangeDeferred {
            pod: deferred.pod,
            why: deferred.why,
        });
    }
    outcome.volumes = facts.into_iter().map(|(pod, f)| (pod, f.status)).collect();
    outcome
}

/// Makes one call; returns `(pod, change)` for a modification.
async fn run(ec2: &Client, step: &Step) -> Result<Option<(String, String)>, Error> {
    match step {
        Step::Tag { volume, tags, .. } => {
            ec2.create_tags()
                .resources(volume)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .send()
                .await
                .map_err(call(format!("tag volume {volume}")))?;
            Ok(None)
        }
        Step::Modify {
            pod,
            volume,
            iops,
            throughput,
            change,
        } => {
            ec2.modify_volume()
                .volume_id(volume)
                .set_iops(*iops)
                .set_throughput(*throughput)
                .send()
                .await
                .map_err(call(format!("modify volume {volume} ({change})")))?;
            info!(%pod, %volume, %change, "modifying volume");
            Ok(Some((pod.clone(), format!("{volume}: {change}"))))
        }
    }
}

/// DescribeVolumes and DescribeVolumesModifications for the cluster's volumes.
async fn describe(
    ec2: &Client,
    ids: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, VolumeFacts>, Error> {
    let wanted: Vec<String> = ids.values().cloned().collect();
    let volumes = ec2
        .describe_volumes()
        .set_volume_ids(Some(wanted.clone()))
        .send()
        .await
        .map_err(call("describe the cluster's volumes"))?;
    let modifications = ec2
        .describe_volumes_modifications()
        .filters(
            Filter::builder()
                .name("volume-id")
                .set_values(Some(wanted))
                .build(),
        )
        .send()
        .await
        .map_err(call("describe the volumes' modifications"))?;
    let mut latest: BTreeMap<&str, &VolumeModification> = BTreeMap::new();
    for m in modifications.volumes_modifications() {
        let Some(id) = m.volume_id() else { continue };
        let newer = latest.get(id).is_none_or(|old| started(old) < started(m));
        if newer {
            latest.insert(id, m);
        }
    }
    let mut facts = BTreeMap::new();
    for (pod, id) in ids {
        let Some(volume) = volumes.volumes().iter().find(|v| v.volume_id() == Some(id)) else {
            continue;
        };
        facts.insert(
            pod.clone(),
            volume_facts(volume, latest.get(id.as_str()).copied()),
        );
    }
    Ok(facts)
}

fn started(m: &VolumeModification) -> Option<Timestamp> {
    m.start_time()
        .and_then(|t| Timestamp::from_second(t.secs()).ok())
}

fn volume_facts(volume: &Volume, modification: Option<&VolumeModification>) -> VolumeFacts {
    let attachment = volume.attachments().first();
    VolumeFacts {
        status: VolumeStatus {
            id: volume.volume_id().unwrap_or_default().to_owned(),
            zone: volume.availability_zone().map(str::to_owned),
            volume_type: volume.volume_type().map(|t| t.as_str().to_owned()),
            size_gib: volume.size(),
            iops: volume.iops(),
            throughput: volume.throughput(),
            state: volume.state().map(|s| s.as_str().to_owned()),
            attached_to: attachment.and_then(|a| a.instance_id()).map(str::to_owned),
            attachment_state: attachment
                .and_then(|a| a.state())
                .map(|s| s.as_str().to_owned()),
            modification: modification.map(|m| {
                decide::modification_status(
                    m.modification_state()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    m.progress(),
                    m.target_iops(),
                    m.target_throughput(),
                    m.target_size(),
                    started(m),
                )
            }),
            pending_change: None,
        },
        tags: volume
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
        modification_started: modification.and_then(started),
    }
}
