//! In-memory caches (reflectors) of the objects the node side reads all the
//! time: pods, services, endpoint slices, claims, volumes and classes. Loops
//! read these instead of polling the apiserver.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// The caches; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Woken by every change to a pod or an EndpointSlice: what the hosts
    /// files are made of (kube-proxy reacts to a watch, not on a timer).
    pub names_changed: Arc<Notify>,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every Service.
    pub services: Store<Service>,
    /// Every EndpointSlice.
    pub endpoint_slices: Store<EndpointSlice>,
    /// Every PersistentVolumeClaim.
    pub claims: Store<PersistentVolumeClaim>,
    /// Every PersistentVolume.
    pub volumes: Store<PersistentVolume>,
    /// Every StorageClass.
    pub classes: Store<StorageClass>,
}

fn start<K>(client: &Client, changed: Option<Arc<Notify>>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Err(error) => tracing::debug!(%error, "watch"),
                Ok(_) => {
                    if let Some(changed) = &changed {
                        changed.notify_one();
                    }
                }
            }
        }
    });
    store
}

impl Stores {
    /// Starts one watch per kind and waits until each has listed once.
    pub async fn start(client: &Client) -> Self {
        let names_changed = Arc::new(Notify::new());
        let stores = Self {
            pods: start(client, Some(names_changed.clone())),
            services: start(client, None),
            endpoint_slices: start(client, Some(names_changed.clone())),
            claims: start(client, None),
            volumes: start(client, None),
            classes: start(client, None),
            names_changed,
        };
        let _ = stores.pods.wait_until_ready().await;
        let _ = stores.services.wait_until_ready().await;
        let _ = stores.endpoint_slices.wait_until_ready().await;
        let _ = stores.claims.wait_until_ready().await;
        let _ = stores.volumes.wait_until_ready().await;
        let _ = stores.classes.wait_until_ready().await;
        stores
    }
}
