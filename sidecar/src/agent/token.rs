//! The clone token that guards the agent's endpoints that act (clone,
//! re-seed, archive, purge): one check in front of all of them.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;
use tracing::warn;

use super::Shared;

/// Lets a request through only with `Authorization: Bearer <clone token>`.
pub async fn require(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if authorized(request.headers(), &shared.credentials.clone_token) {
        return next.run(request).await;
    }
    // Never log what was presented: it may be a near-miss of the real token.
    warn!(path = %request.uri().path(), "refused a request with a missing or wrong token");
    (StatusCode::UNAUTHORIZED, "a valid clone token is required").into_response()
}

/// Whether the request carries the cluster's clone token (compared in
/// constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = value.parse() {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(&with("Bearer s3cret"), "s3cret"));
        assert!(!authorized(&with("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&with("s3cret"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }
}
