//! The cluster's primary Lease as the operator reads it: which pod it names
//! and how long ago, by the operator's own clock, its holder last renewed
//! it (measured from when the operator first saw the current version, never
//! from the timestamps in it: clocks of two machines never agree).

use k8s_openapi::jiff::SignedDuration;

/// The primary Lease, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The pod it names.
    pub holder: Option<String>,
    /// Its resourceVersion: a change of holder is made conditional on it.
    pub version: String,
    /// How long the version has not changed (no renewal), by the
    /// operator's clock; from the first look after an operator restart.
    pub unrenewed_for: SignedDuration,
    /// How long a renewal counts: the holder's agent fences its server
    /// when it could not renew for this long.
    pub duration: SignedDuration,
}

/// After the holder's last renewal, how long beyond the Lease's duration
/// the operator waits before it may name another pod: the agent's fence
/// takes this long at most once it is due.
pub const FENCE_MARGIN: SignedDuration = SignedDuration::from_secs(1);

impl LeaseView {
    /// Whether `pod` may still be unfenced by its agent: it holds the Lease
    /// and renewed it too recently for its agent to have given up.
    pub fn may_still_be_unfenced(&self, pod: &str) -> bool {
        self.holder.as_deref() == Some(pod) && self.unrenewed_for < self.duration + FENCE_MARGIN
    }

    /// How long until `pod` has been fenced by its agent, if it may not yet.
    pub fn until_fenced(&self, pod: &str) -> Option<SignedDuration> {
        self.may_still_be_unfenced(pod)
            .then(|| self.duration + FENCE_MARGIN - self.unrenewed_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: &str, unrenewed_ms: i64) -> LeaseView {
        LeaseView {
            holder: Some(holder.to_owned()),
            version: "1".to_owned(),
            unrenewed_for: SignedDuration::from_millis(unrenewed_ms),
            duration: SignedDuration::from_secs(2),
        }
    }

    #[test]
    fn a_holder_counts_as_fenced_only_once_its_duration_and_the_margin_passed() {
        assert!(view("db-0", 500).may_still_be_unfenced("db-0"));
        assert!(view("db-0", 2900).may_still_be_unfenced("db-0"));
        assert!(!view("db-0", 3000).may_still_be_unfenced("db-0"));
        assert!(
            !view("db-1", 0).may_still_be_unfenced("db-0"),
            "not the holder"
        );
        assert_eq!(
            view("db-0", 1000).until_fenced("db-0"),
            Some(SignedDuration::from_secs(2))
        );
        assert_eq!(view("db-0", 5000).until_fenced("db-0"), None);
    }
}
