//! The look at a cluster's volumes at EC2, off the reconcile's path: a
//! reconcile takes the latest look and, when one is due, starts the next in
//! the background, so EC2 (slow, throttled or unreachable) never delays a
//! reconcile and with it a failover. A look that modified a volume is an
//! Event; one that found something new asks for a reconcile.

use ebisu_api::MySQLCluster;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use crate::{
    events,
    model::{ClusterObjects, Problem},
    validate::ValidatedCluster,
    volumes::{VolumeLook, look, looks},
};

/// The latest look at the cluster's volumes; starts the next one when due.
pub fn latest(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
) -> VolumeLook {
    let key = ObjectRef::from_obj(cluster);
    let subject = looks::Subject {
        generation: cluster.metadata.generation,
        volumes: look::volume_ids(validated, objects).into_values().collect(),
    };
    let (latest, due) = ctx
        .volume_looks
        .latest(&key, &subject, std::time::Instant::now());
    if due {
        tokio::spawn(look_at_volumes(
            ctx.clone(),
            cluster.clone(),
            subject,
            validated.clone(),
            objects.clone(),
        ));
    }
    latest
}

/// One look, in the background.
async fn look_at_volumes(
    ctx: Context,
    cluster: MySQLCluster,
    subject: looks::Subject,
    validated: ValidatedCluster,
    objects: ClusterObjects,
) {
    let key = ObjectRef::from_obj(&cluster);
    let outcome = match tokio::time::timeout(
        looks::TIMEOUT,
        look::look(&ctx.ec2, &validated, &objects),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => VolumeLook {
            problems: vec![Problem::Ec2Unavailable(format!(
                "no answer within {:?}",
                looks::TIMEOUT
            ))],
            ..VolumeLook::default()
        },
    };
    for (pod, change) in &outcome.modified {
        events::publish(
            &ctx.recorder,
            &cluster,
            "ModifyVolume",
            events::volume_modified(pod, change),
        )
        .await;
    }
    if ctx
        .volume_looks
        .store(&key, subject, outcome, std::time::Instant::now())
    {
        ctx.prober.trigger(key);
    }
}
