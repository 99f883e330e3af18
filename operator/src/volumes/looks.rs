//! The looks at each cluster's volumes, made in the background so that EC2
//! (slow, throttled or unreachable) never delays a reconcile and with it a
//! failover: a reconcile takes the latest outcome and starts a new look
//! when one is due (none yet, a new spec or a new volume, an old look, a
//! volume that initializes, a change made); a look that finds something
//! new asks for a reconcile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ebisu_api::MySQLCluster;
use kube::runtime::reflector::ObjectRef;

use super::look::VolumeLook;

/// How old a look may get before the next reconcile starts another.
pub const REFRESH: Duration = Duration::from_secs(30);
/// As [`REFRESH`], while a volume made from a snapshot initializes: its
/// instance serves reads and may be chosen again soon after it completes.
pub const REFRESH_INITIALIZING: Duration = Duration::from_secs(5);
/// How long one look may take before it counts as EC2 being unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// What a look looks at: a new spec or a new volume calls for a new look.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The cluster's generation.
    pub generation: Option<i64>,
    /// Its volumes' ids.
    pub volumes: Vec<String>,
}

#[derive(Debug, Default)]
struct Entry {
    outcome: VolumeLook,
    done_at: Option<Instant>,
    subject: Option<Subject>,
    running: bool,
    /// The last look changed a volume: look again at once.
    again: bool,
}

/// Each cluster's latest look.
#[derive(Debug, Default)]
pub struct VolumeLooks {
    entries: Mutex<HashMap<ObjectRef<MySQLCluster>, Entry>>,
}

impl VolumeLooks {
    /// The latest outcome for `cluster`, and whether a new look should start
    /// now (none yet, the spec or the volumes changed, the last one is old
    /// or changed something); if so it counts as running from now on.
    pub fn latest(
        &self,
        cluster: &ObjectRef<MySQLCluster>,
        subject: &Subject,
        now: Instant,
    ) -> (VolumeLook, bool) {
        let Ok(mut entries) = self.entries.lock() else {
            return (VolumeLook::default(), false);
        };
        let entry = entries.entry(cluster.clone()).or_default();
        let refresh = if entry.outcome.initializing().next().is_some() {
            REFRESH_INITIALIZING
        } else {
            REFRESH
        };
        let due = !entry.running
            && (entry.again
                || entry.subject.as_ref() != Some(subject)
                || entry
                    .done_at
                    .is_none_or(|at| now.duration_since(at) >= refresh));
        if due {
            entry.running = true;
        }
        (entry.outcome.clone(), due)
    }

    /// Records a finished look; true when its outcome differs from the last.
    pub fn store(
        &self,
        cluster: &ObjectRef<MySQLCluster>,
        subject: Subject,
        outcome: VolumeLook,
        now: Instant,
    ) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let entry = entries.entry(cluster.clone()).or_default();
        entry.again = !outcome.modified.is_empty();
        let changed =
            entry.outcome.volumes != outcome.volumes || entry.outcome.problems != outcome.problems;
        entry.outcome = VolumeLook {
            modified: Vec::new(),
            ..outcome
        };
        entry.done_at = Some(now);
        entry.subject = Some(subject);
        entry.running = false;
        changed || entry.again
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Problem;

    fn at(generation: i64) -> Subject {
        Subject {
            generation: Some(generation),
            volumes: vec!["vol-1".to_owned()],
        }
    }

    #[test]
    fn a_look_is_due_first_on_a_new_spec_when_old_and_after_a_change() {
        let looks = VolumeLooks::default();
        let key = ObjectRef::new("orders").within("shop");
        let t0 = Instant::now();
        assert!(looks.latest(&key, &at(1), t0).1, "first look");
        assert!(!looks.latest(&key, &at(1), t0).1, "one look at a time");
        assert!(!looks.store(&key, at(1), VolumeLook::default(), t0));
        assert!(!looks.latest(&key, &at(1), t0 + Duration::from_secs(5)).1);
        assert!(
            looks.latest(&key, &at(2), t0 + Duration::from_secs(5)).1,
            "new spec"
        );
        assert!(!looks.store(
            &key,
            at(2),
            VolumeLook::default(),
            t0 + Duration::from_secs(5)
        ));
        let more = Subject {
            volumes: vec!["vol-1".to_owned(), "vol-2".to_owned()],
            ..at(2)
        };
        assert!(
            looks.latest(&key, &more, t0 + Duration::from_secs(6)).1,
            "a new volume"
        );
        let found = VolumeLook {
            problems: vec![Problem::Ec2Unavailable("no credentials".to_owned())],
            ..VolumeLook::default()
        };
        assert!(looks.store(&key, at(2), found.clone(), t0 + Duration::from_secs(6)));
        let (latest, due) = looks.latest(&key, &at(2), t0 + Duration::from_secs(7));
        assert_eq!((latest, due), (found.clone(), false));
        assert!(
            looks.latest(&key, &at(2), t0 + Duration::from_secs(40)).1,
            "refresh"
        );
        let modified = VolumeLook {
            modified: vec![("orders-0".to_owned(), "vol-1: iops 3000 -> 4000".to_owned())],
            ..found
        };
        assert!(looks.store(&key, at(2), modified, t0 + Duration::from_secs(41)));
        assert!(
            looks.latest(&key, &at(2), t0 + Duration::from_secs(41)).1,
            "after a change"
        );
    }

    #[test]
    fn a_volume_that_initializes_is_looked_at_again_sooner() {
        let looks = VolumeLooks::default();
        let key = ObjectRef::new("orders").within("shop");
        let t0 = Instant::now();
        assert!(looks.latest(&key, &at(1), t0).1);
        let loading = |progress| VolumeLook {
            volumes: [(
                "orders-1".to_owned(),
                ebisu_api::VolumeStatus {
                    id: "vol-1".to_owned(),
                    initialization: Some(ebisu_api::VolumeInitializationStatus {
                        progress: Some(progress),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )]
            .into(),
            ..VolumeLook::default()
        };
        looks.store(&key, at(1), loading(40), t0);
        assert!(!looks.latest(&key, &at(1), t0 + Duration::from_secs(4)).1);
        assert!(looks.latest(&key, &at(1), t0 + Duration::from_secs(5)).1);
        looks.store(&key, at(1), loading(100), t0 + Duration::from_secs(6));
        assert!(
            !looks.latest(&key, &at(1), t0 + Duration::from_secs(20)).1,
            "complete: the usual refresh"
        );
    }
}
