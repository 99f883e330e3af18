//! Pods whose init container keeps failing (a copy that cannot be made, a
//! data directory that cannot be initialised): why, from the pod's status
//! (the init container leaves the end of its log there on failure), so it
//! is a condition and an Event instead of a line in a log nobody reads.
//! Pure: the caller passes in the pods it read.

use k8s_openapi::api::core::v1::Pod;

use crate::model::Problem;

/// The init container's name in the pod template.
const INIT: &str = "init";
/// Failures before it counts: a first one may be a peer that was restarting.
const FAILURES: i32 = 2;
/// The longest reason quoted.
const MAX_REASON: usize = 400;

/// Problems of the pods whose init container failed again and again and
/// has not succeeded since.
pub fn failing(pods: &[Pod]) -> Vec<Problem> {
    pods.iter().filter_map(failure).collect()
}

fn failure(pod: &Pod) -> Option<Problem> {
    let name = pod.metadata.name.clone()?;
    let status = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == INIT)?;
    let succeeded = status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    if succeeded || status.restart_count < FAILURES {
        return None;
    }
    let last = status.last_state.as_ref()?.terminated.as_ref()?;
    if last.exit_code == 0 {
        return None;
    }
    let why = last
        .message
        .as_deref()
        .and_then(last_error)
        .unwrap_or_else(|| format!("it exited with code {}", last.exit_code));
    Some(Problem::InitFailing {
        pod: name,
        failures: status.restart_count,
        why,
    })
}

/// The error a log tail ends with: the message of its last `ERROR` line
/// (without timestamp, level and target), else its last line.
fn last_error(tail: &str) -> Option<String> {
    let lines: Vec<&str> = tail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains(" ERROR "))
        .or_else(|| lines.last())?;
    let message = line.split_once(" ERROR ").map_or(*line, |(_, rest)| {
        rest.split_once(": ").map_or(rest, |(_, message)| message)
    });
    Some(message.chars().take(MAX_REASON).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod fixture")
    }

    const FAILING: &str = r#"
metadata: {name: orders-2}
status:
  initContainerStatuses:
  - name: install-sidecar
    image: ebisu-sidecar
    imageID: ""
    ready: true
    restartCount: 0
    state: {terminated: {exitCode: 0}}
  - name: init
    image: mysql:9.7
    imageID: ""
    ready: false
    restartCount: 3
    state: {waiting: {reason: CrashLoopBackOff}}
    lastState:
      terminated:
        exitCode: 1
        message: |
          2026-12-01T10:00:00.000000Z  INFO ebisu_sidecar::init: cloning from orders-1
          2026-12-01T10:00:09.000000Z ERROR ebisu_sidecar: failed to clone from orders-1: ERROR 3873 (HY000): Clone estimated database size is 2.1 GiB. Available space 1.0 GiB is not enough.
"#;

    #[test]
    fn an_init_container_failing_again_and_again_is_reported_with_its_error() {
        let problems = failing(&[pod(FAILING)]);
        assert_eq!(problems.len(), 1);
        let Problem::InitFailing { pod, failures, why } = &problems[0] else {
            panic!("{problems:?}");
        };
        assert_eq!((pod.as_str(), *failures), ("orders-2", 3));
        assert!(
            why.starts_with("failed to clone from orders-1: ERROR 3873"),
            "{why}"
        );
        let message = problems[0].message();
        assert!(
            message.contains("kubectl logs orders-2 -c init"),
            "{message}"
        );
    }

    #[test]
    fn a_first_failure_a_retry_that_succeeded_or_no_message_are_handled() {
        let once = FAILING.replace("restartCount: 3", "restartCount: 1");
        assert!(
            failing(&[pod(&once)]).is_empty(),
            "one failure may be a peer restarting"
        );
        let done = FAILING.replace(
            "state: {waiting: {reason: CrashLoopBackOff}}",
            "state: {terminated: {exitCode: 0}}",
        );
        assert!(failing(&[pod(&done)]).is_empty(), "it succeeded since");
        // Retrying right now still counts: the condition does not flap.
        let running = FAILING.replace(
            "state: {waiting: {reason: CrashLoopBackOff}}",
            "state: {running: {}}",
        );
        assert_eq!(failing(&[pod(&running)]).len(), 1);
        let silent = pod(FAILING.split("        message:").next().unwrap_or_default());
        let Some(Problem::InitFailing { why, .. }) = failing(&[silent]).pop() else {
            panic!("reported without a message too");
        };
        assert_eq!(why, "it exited with code 1");
        assert!(failing(&[pod("metadata: {name: orders-0}")]).is_empty());
    }

    #[test]
    fn the_last_error_line_is_quoted_without_its_prefix() {
        assert_eq!(
            last_error("a\n2026 ERROR x::y: failed to read: no\nlater info\n").as_deref(),
            Some("failed to read: no")
        );
        assert_eq!(last_error("just this\n").as_deref(), Some("just this"));
        assert_eq!(last_error("\n \n"), None);
    }
}
