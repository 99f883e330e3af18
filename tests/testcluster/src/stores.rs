//! In-memory caches (reflectors) of the objects the node side reads all the
//! time: pods, services, endpoint slices, claims, volumes and classes. Loops
//! read these instead of polling the apiserver.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// The caches; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stores {
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

fn start<K>(client: &Client) -> Store<K>
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
            if let Err(error) = event {
                tracing::debug!(%error, "watch");
            }
        }
    });
    store
}

impl Stores {
    /// Starts one watch per kind and waits until each has listed once.
    pub async fn start(client: &Client) -> Self {
        let stores = Self {
            pods: start(client),
            services: start(client),
            endpoint_slices: start(client),
            claims: start(client),
            volumes: start(client),
            classes: start(client),
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
