//! `POST /reseed`: the operator found transactions on this server that the
//! primary lacks (or a copy the primary refuses to stream to), so the data
//! must be set aside and seeded afresh. The agent only records the request
//! in the data directory; the pod's next `init` carries it out, after the
//! operator has deleted the pod. It is refused (507, saying what to do)
//! when the volume keeps too many copies already or has no room for a
//! fresh one.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use ebisu_api::agent::ReseedRequest;
use tracing::{info, warn};

use super::Shared;

/// `POST /reseed` (behind the clone token).
pub async fn request(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<ReseedRequest>,
) -> Response {
    // Refused before the pod is deleted: the server keeps running (out of
    // service) instead of failing to start for want of room.
    let data_dir = shared.config.data_dir.clone();
    let look = tokio::task::spawn_blocking(move || crate::set_aside::may_set_aside(&data_dir))
        .await
        .map_err(|e| e.to_string())
        .and_then(|looked| looked.map_err(|e| e.to_string()));
    match look {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            warn!(%why, "refused a re-seed");
            return (StatusCode::INSUFFICIENT_STORAGE, why).into_response();
        }
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
    match crate::set_aside::request(&shared.config.data_dir, &body.reason) {
        Ok(()) => {
            info!(reason = %body.reason, "re-seed requested: the data is set aside when the pod starts again");
            (StatusCode::OK, "recorded").into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
