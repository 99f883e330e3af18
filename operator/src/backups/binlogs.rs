//! Binary log expiry (`spec.binaryLogs`): the servers' own expiry is off,
//! and every reconcile tells each agent which sets must hold a file's
//! transactions before it goes ([`held_by`], pure): the archive's, when
//! there is one, and every instance's ([`purge`], IO).

use ebisu_api::agent::{BinlogPurge, BinlogPurged, PATH_BINLOG_PURGE};

use crate::model::ServerState;

/// Why an agent could not be asked to purge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent did not answer or refused.
    #[error("failed to ask {pod}'s agent to purge binary logs: {why}")]
    Agent {
        /// The pod.
        pod: String,
        /// What went wrong.
        why: String,
    },
}

/// The GTID sets that must hold a file's transactions before any server
/// purges it: the archive's (with `spec.backup.archive`: `Some`, holding
/// its set once known) and each instance's; or why nothing may go now (an
/// instance missing or silent might need any file when it returns, and an
/// archive whose set is unknown might lack any).
pub fn held_by(
    servers: &[ServerState],
    instances: usize,
    archive: Option<Option<&str>>,
) -> Result<Vec<String>, String> {
    let mut sets = Vec::with_capacity(servers.len() + 1);
    match archive {
        Some(Some(set)) => sets.push(set.to_owned()),
        Some(None) => return Err("the archive's GTID set is not known".to_owned()),
        None => {}
    }
    if servers.len() < instances {
        return Err(format!("{} of {instances} instances exist", servers.len()));
    }
    for server in servers {
        match server.gtid.as_ref().filter(|_| server.answered()) {
            Some(gtid) => sets.push(gtid.to_string()),
            None => return Err(format!("{} does not answer", server.pod)),
        }
    }
    Ok(sets)
}

/// Asks `pod`'s agent to purge what `order` allows.
pub async fn purge(
    agents: &reqwest::Client,
    pod: &str,
    ip: &str,
    token: &str,
    order: &BinlogPurge,
) -> Result<BinlogPurged, Error> {
    crate::agent_client::post(
        agents,
        ip,
        PATH_BINLOG_PURGE,
        token,
        order,
        // Inside a reconcile: a purge not done now is done next time.
        std::time::Duration::from_secs(5),
    )
    .await
    .map_err(|why| Error::Agent {
        pod: pod.to_owned(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Answer;
    use ebisu_mysql::{Flavor, GtidSet};

    fn server(pod: &str, gtid: Option<&str>) -> ServerState {
        ServerState {
            answer: if gtid.is_some() {
                Answer::Answered
            } else {
                Answer::Silent
            },
            gtid: gtid.map(|g| GtidSet::parse(Flavor::MariaDb, g).unwrap()),
            ..ServerState::unobserved(pod, &format!("{pod}.db"))
        }
    }

    #[test]
    fn every_instance_and_the_archive_must_hold_a_file() {
        let servers = [server("a-0", Some("0-1-10")), server("a-1", Some("0-1-8"))];
        assert_eq!(
            held_by(&servers, 2, None).unwrap(),
            vec!["0-1-10".to_owned(), "0-1-8".to_owned()]
        );
        assert_eq!(
            held_by(&servers, 2, Some(Some("0-1-5"))).unwrap(),
            vec!["0-1-5".to_owned(), "0-1-10".to_owned(), "0-1-8".to_owned()]
        );
    }

    #[test]
    fn nothing_goes_while_anything_that_may_need_it_is_unknown() {
        let servers = [server("a-0", Some("0-1-10")), server("a-1", None)];
        assert_eq!(
            held_by(&servers, 2, None).unwrap_err(),
            "a-1 does not answer"
        );
        assert_eq!(
            held_by(&servers[..1], 2, None).unwrap_err(),
            "1 of 2 instances exist"
        );
        assert_eq!(
            held_by(&servers[..1], 1, Some(None)).unwrap_err(),
            "the archive's GTID set is not known"
        );
    }
}
