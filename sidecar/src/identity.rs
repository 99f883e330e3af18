//! Who this instance is: its pod name and ordinal, its server id, the name
//! peers reach it by, and the role it starts in.

use ebisu_api::{
    cluster::{MAX_REPLICAS, MAX_SERVER_ID},
    names::{self, ROLE_PRIMARY, ROLE_REPLICA},
};

/// Why the instance's identity could not be worked out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Neither POD_NAME nor the hostname name the pod.
    #[error("failed to find the pod name: set POD_NAME (the operator sets it from metadata.name)")]
    NoPodName,
    /// The pod name does not end in a StatefulSet ordinal.
    #[error(
        "failed to read an ordinal from pod name {0:?}: ebisu instances are StatefulSet pods named <cluster>-<ordinal>"
    )]
    NoOrdinal(String),
    /// The ordinal is beyond what a cluster may have.
    #[error("failed to accept ordinal {0}: a cluster has at most {MAX_REPLICAS} instances (0..={max})", max = MAX_REPLICAS - 1)]
    OrdinalTooLarge(u32),
    /// The server id base cannot hold this ordinal.
    #[error(
        "failed to assign a server id: EBISU_SERVER_ID_BASE={base} plus ordinal {ordinal} is outside 1..={MAX_SERVER_ID}"
    )]
    ServerIdOutOfRange {
        /// The configured base.
        base: i64,
        /// This pod's ordinal.
        ordinal: u32,
    },
    /// EBISU_ROLE holds something other than a role.
    #[error("failed to read EBISU_ROLE={0:?}: expected \"primary\", \"replica\" or empty")]
    UnknownRole(String),
}

/// The role a server starts in. Every server starts read-only either way; the
/// role only picks the my.cnf part (semi-sync source or replica settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRole {
    /// Bootstraps the cluster or was primary when it stopped.
    Primary,
    /// Follows a primary.
    Replica,
}

/// This instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Pod name, `<cluster>-<ordinal>`.
    pub pod_name: String,
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// `server_id`: base + ordinal.
    pub server_id: u32,
    /// The name peers and the operator reach this server by.
    pub report_host: String,
    /// Role to start in.
    pub role: StartRole,
}

/// What the pod's environment says.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// POD_NAME.
    pub pod_name: Option<String>,
    /// The hostname, used when POD_NAME is unset (a StatefulSet pod's hostname is its name).
    pub hostname: Option<String>,
    /// POD_NAMESPACE.
    pub namespace: Option<String>,
    /// EBISU_CLUSTER; the pod name's prefix when unset.
    pub cluster: Option<String>,
    /// EBISU_SERVER_ID_BASE.
    pub server_id_base: i64,
    /// EBISU_ROLE: the pod's `ebisu.dev/role` label, empty before the operator set one.
    pub role_label: Option<String>,
}

/// Works out this instance's identity.
pub fn resolve(env: &Environment) -> Result<Identity, Error> {
    let pod_name = [&env.pod_name, &env.hostname]
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .ok_or(Error::NoPodName)?
        .to_owned();
    let ordinal = names::ordinal_of(&pod_name).ok_or_else(|| Error::NoOrdinal(pod_name.clone()))?;
    if ordinal >= MAX_REPLICAS.unsigned_abs() {
        return Err(Error::OrdinalTooLarge(ordinal));
    }
    let server_id = env
        .server_id_base
        .checked_add(i64::from(ordinal))
        .filter(|id| (1..=MAX_SERVER_ID).contains(id))
        .and_then(|id| u32::try_from(id).ok())
        .ok_or(Error::ServerIdOutOfRange {
            base: env.server_id_base,
            ordinal,
        })?;
    let cluster = match env.cluster.as_deref().filter(|c| !c.is_empty()) {
        Some(cluster) => cluster.to_owned(),
        // ordinal_of succeeded, so the name has a '-'.
        None => pod_name
            .rsplit_once('-')
            .map(|(c, _)| c.to_owned())
            .unwrap_or_default(),
    };
    let report_host = match env.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => names::pod_host(&cluster, ns, ordinal),
        None => format!("{pod_name}.{}", names::headless_service(&cluster)),
    };
    let role = start_role(env.role_label.as_deref(), ordinal)?;
    Ok(Identity {
        pod_name,
        ordinal,
        server_id,
        report_host,
        role,
    })
}

/// The operator's label decides; before it has labelled anyone, ordinal 0
/// bootstraps the cluster as the tutorial's topology does.
pub fn start_role(label: Option<&str>, ordinal: u32) -> Result<StartRole, Error> {
    match label.map(str::trim).unwrap_or_default() {
        ROLE_PRIMARY => Ok(StartRole::Primary),
        ROLE_REPLICA => Ok(StartRole::Replica),
        "" if ordinal == 0 => Ok(StartRole::Primary),
        "" => Ok(StartRole::Replica),
        other => Err(Error::UnknownRole(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pod: &str) -> Environment {
        Environment {
            pod_name: Some(pod.to_owned()),
            namespace: Some("shop".to_owned()),
            cluster: Some("orders".to_owned()),
            server_id_base: 100,
            ..Environment::default()
        }
    }

    #[test]
    fn server_id_is_base_plus_ordinal() {
        let id = resolve(&env("orders-2")).expect("identity");
        assert_eq!((id.ordinal, id.server_id), (2, 102));
        assert_eq!(id.report_host, "orders-2.orders.shop.svc.cluster.local");
    }

    #[test]
    fn hostname_is_used_without_pod_name() {
        let e = Environment {
            pod_name: None,
            hostname: Some("orders-1\n".to_owned()),
            ..env("")
        };
        assert_eq!(resolve(&e).expect("identity").pod_name, "orders-1");
        let blank = Environment {
            pod_name: Some(String::new()),
            hostname: Some("orders-1".to_owned()),
            ..env("")
        };
        assert_eq!(resolve(&blank).expect("identity").ordinal, 1);
    }

    #[test]
    fn pod_name_without_ordinal_is_a_clear_error() {
        assert_eq!(
            resolve(&env("orders")),
            Err(Error::NoOrdinal("orders".to_owned()))
        );
        assert_eq!(
            resolve(&env("orders-x")),
            Err(Error::NoOrdinal("orders-x".to_owned()))
        );
        let message = resolve(&env("web")).expect_err("no ordinal").to_string();
        assert!(message.contains("<cluster>-<ordinal>"), "{message}");
        let nothing = Environment {
            pod_name: None,
            hostname: None,
            ..env("")
        };
        assert_eq!(resolve(&nothing), Err(Error::NoPodName));
    }

    #[test]
    fn ordinals_beyond_the_cluster_limit_are_refused() {
        assert_eq!(resolve(&env("orders-9")), Err(Error::OrdinalTooLarge(9)));
        assert!(resolve(&env("orders-8")).is_ok());
    }

    #[test]
    fn server_id_must_stay_in_mysql_range() {
        let zero = Environment {
            server_id_base: 0,
            ..env("orders-0")
        };
        assert_eq!(
            resolve(&zero),
            Err(Error::ServerIdOutOfRange {
                base: 0,
                ordinal: 0
            })
        );
        let top = Environment {
            server_id_base: MAX_SERVER_ID,
            ..env("orders-1")
        };
        assert_eq!(
            resolve(&top),
            Err(Error::ServerIdOutOfRange {
                base: MAX_SERVER_ID,
                ordinal: 1
            })
        );
        let last = Environment {
            server_id_base: MAX_SERVER_ID - 8,
            ..env("orders-8")
        };
        assert_eq!(resolve(&last).expect("fits").server_id, u32::MAX);
    }

    #[test]
    fn cluster_and_service_default_to_the_pod_name_prefix() {
        let e = Environment {
            cluster: None,
            namespace: None,
            ..env("my-db-3")
        };
        assert_eq!(resolve(&e).expect("identity").report_host, "my-db-3.my-db");
    }

    #[test]
    fn label_decides_the_role_and_ordinal_zero_bootstraps() {
        assert_eq!(start_role(None, 0), Ok(StartRole::Primary));
        assert_eq!(start_role(Some(""), 1), Ok(StartRole::Replica));
        assert_eq!(start_role(Some("replica"), 0), Ok(StartRole::Replica));
        assert_eq!(start_role(Some("primary"), 2), Ok(StartRole::Primary));
        assert_eq!(
            start_role(Some("leader"), 0),
            Err(Error::UnknownRole("leader".to_owned()))
        );
    }
}
