//! Calls to a pod's agent (`ebisu_api::agent`): a JSON body posted with
//! the clone token, a JSON answer read back.

use std::time::Duration;

use ebisu_api::names::AGENT_PORT;
use serde::{Serialize, de::DeserializeOwned};

/// Posts `body` to `path` on the agent at `ip` and reads the answer; the
/// error is the transport's, the status's with the agent's reason (its
/// answer's text), or the decoder's, as text.
pub async fn post<Q: Serialize, A: DeserializeOwned>(
    agents: &reqwest::Client,
    ip: &str,
    path: &str,
    token: &str,
    body: &Q,
    timeout: Duration,
) -> Result<A, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let answer = agents
        .post(format!("http://{ip}:{AGENT_PORT}{path}"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    let answer = answer.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let reason = String::from_utf8_lossy(&answer);
        return Err(format!("the agent answered {status}: {}", reason.trim()));
    }
    serde_json::from_slice(&answer).map_err(|e| e.to_string())
}
