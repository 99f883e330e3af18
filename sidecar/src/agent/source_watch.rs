//! Whether this replica still hears its source, and since when not: four
//! times a second the agent reads where its receiver stands (heartbeats
//! got, binary log read, GTIDs received); the source sends a heartbeat
//! every half second when it has nothing else to send, so a change means
//! it was heard. `/status` reports how long ago that was, and the operator
//! counts a silent primary as lost only when no replica still hears it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ebisu_mysql::driver::ReceiverProgress;
use tokio::time::Instant;

use super::Shared;

/// How often the receiver is looked at.
pub const TICK: Duration = Duration::from_millis(250);
/// How long one look may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the agent knows of its source: which one, what the receiver had got
/// at the last look, and when that last changed.
#[derive(Debug, Default, Clone)]
pub struct Heard {
    source: Option<String>,
    got: Option<String>,
    changed_at: Option<Instant>,
}

impl Heard {
    /// Records one look (`None`: the server is no replica); pure but for
    /// the time it is given. A first look, or one after the source changed,
    /// is a baseline: only a change since counts as hearing the source.
    pub fn record(&mut self, look: Option<&ReceiverProgress>, now: Instant) {
        let Some(look) = look else {
            *self = Self::default();
            return;
        };
        if self.source.as_deref() != Some(look.source_host.as_str()) {
            *self = Self {
                source: Some(look.source_host.clone()),
                got: Some(look.got.clone()),
                changed_at: None,
            };
            return;
        }
        if self.got.as_deref() != Some(look.got.as_str()) {
            self.got = Some(look.got.clone());
            self.changed_at = Some(now);
        }
    }

    /// The source last heard, and how long ago.
    pub fn ago(&self, now: Instant) -> Option<(String, Duration)> {
        Some((
            self.source.clone()?,
            now.saturating_duration_since(self.changed_at?),
        ))
    }
}

/// Looks at the receiver until the process ends.
pub async fn run(shared: Arc<Shared>, heard: Arc<Mutex<Heard>>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    loop {
        tick.tick().await;
        let look = tokio::time::timeout(LOOK_TIMEOUT, look(&shared, &mut conn)).await;
        let now = Instant::now();
        match look {
            Ok(Ok(progress)) => {
                if let Ok(mut heard) = heard.lock() {
                    heard.record(progress.as_ref(), now);
                }
            }
            // An unanswered look says nothing new: the last change stands
            // and ages. A broken connection is opened again next time.
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not read the receiver");
                conn = None;
            }
            Err(_) => conn = None,
        }
    }
}

async fn look(
    shared: &Shared,
    conn: &mut Option<mysql_async::Conn>,
) -> Result<Option<ReceiverProgress>, crate::server::Error> {
    if conn.is_none() {
        *conn = Some(shared.monitor_conn().await?);
    }
    let Some(c) = conn.as_mut() else {
        return Ok(None);
    };
    let flavor = shared.flavor(c).await?;
    Ok(ebisu_mysql::driver::receiver_progress(c, flavor).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn progress(source: &str, got: &str) -> ReceiverProgress {
        ReceiverProgress {
            connected: true,
            source_host: source.to_owned(),
            got: got.to_owned(),
        }
    }

    #[test]
    fn only_a_change_since_the_first_look_counts_as_hearing_the_source() {
        let t = Instant::now();
        let mut heard = Heard::default();
        heard.record(Some(&progress("db-0", "1/f:10/")), t);
        assert_eq!(heard.ago(at(t, 100)), None, "a baseline, not a hearing");
        heard.record(Some(&progress("db-0", "2/f:10/")), at(t, 500));
        assert_eq!(
            heard.ago(at(t, 1500)),
            Some(("db-0".to_owned(), Duration::from_millis(1000)))
        );
        // Silence: the same look again and again.
        heard.record(Some(&progress("db-0", "2/f:10/")), at(t, 3000));
        assert_eq!(
            heard.ago(at(t, 3000)).map(|(_, d)| d),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn a_new_source_or_no_source_starts_over() {
        let t = Instant::now();
        let mut heard = Heard::default();
        heard.record(Some(&progress("db-0", "1")), t);
        heard.record(Some(&progress("db-0", "2")), at(t, 100));
        heard.record(Some(&progress("db-1", "0")), at(t, 200));
        assert_eq!(heard.ago(at(t, 300)), None, "repointed: a new baseline");
        heard.record(Some(&progress("db-1", "1")), at(t, 400));
        assert!(heard.ago(at(t, 400)).is_some());
        heard.record(None, at(t, 500));
        assert_eq!(heard.ago(at(t, 500)), None, "no replica any more");
    }
}
