//! The agent's Prometheus metrics: server up, replication lag, clone bytes
//! served and received, clone failures.

use std::sync::{Arc, atomic::AtomicU64};

use axum::{extract::State, http::header, response::IntoResponse};
use ebisu_api::agent::AgentStatus;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use super::Shared;

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    server_up: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    /// Bytes of clone streams served to peers.
    pub clone_bytes_served: Counter,
    /// Bytes this instance received when it was seeded.
    pub clone_bytes_received: Counter,
    /// Clone streams that failed while being served.
    pub clone_failures: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ebisu");
        let server_up = Gauge::default();
        let lag_seconds = Gauge::<f64, AtomicU64>::default();
        let clone_bytes_served = Counter::default();
        let clone_bytes_received = Counter::default();
        let clone_failures = Counter::default();
        registry.register(
            "server_up",
            "1 when the server answers queries",
            server_up.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Seconds the replica is behind its source (NaN when unknown or not a replica)",
            lag_seconds.clone(),
        );
        registry.register(
            "clone_bytes_served",
            "Bytes of clone streams served to peers",
            clone_bytes_served.clone(),
        );
        registry.register(
            "clone_bytes_received",
            "Bytes received when this instance was seeded",
            clone_bytes_received.clone(),
        );
        registry.register(
            "clone_failures",
            "Clone streams that failed while being served",
            clone_failures.clone(),
        );
        lag_seconds.set(f64::NAN);
        Self {
            registry,
            server_up,
            lag_seconds,
            clone_bytes_served,
            clone_bytes_received,
            clone_failures,
        }
    }

    /// Records what `/status` just read.
    pub fn observe(&self, status: &AgentStatus) {
        self.server_up.set(i64::from(status.server_up));
        let lag = status.replication.as_ref().and_then(|r| r.lag_seconds);
        self.lag_seconds.set(lag.map_or(f64::NAN, |l| l as f64));
    }

    /// Records that the server did not answer.
    pub fn server_down(&self) {
        self.server_up.set(0);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /metrics`.
pub async fn render(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = String::new();
    // Encoding into a String cannot fail.
    let _ = encode(&mut body, &shared.metrics.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
