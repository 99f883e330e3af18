//! ebisu on the local cluster as a user meets it: the chart installed with
//! helm, a MySQLCluster's status, and SQL to its servers (root over the
//! server's socket where a user would `kubectl exec`, applications over the
//! network by Service name).

use std::{path::PathBuf, process::Command, time::Duration};

use crate::{
    Layout, controlplane,
    kubectl::{Kubectl, KubectlError, workspace_path},
};

/// Where the chart puts the operator.
pub const OPERATOR_NAMESPACE: &str = "ebisu-system";
/// The operator's Deployment, as the chart names it for release `ebisu`.
pub const OPERATOR_DEPLOYMENT: &str = "ebisu-operator";

#[derive(Debug, thiserror::Error)]
pub enum EbisuError {
    #[error(transparent)]
    Kubectl(#[from] KubectlError),
    #[error("failed to run mariadb against {target}: {message}")]
    Sql { target: String, message: String },
    #[error("failed to find {name} in the cluster hosts file {path}")]
    NoAddress { name: String, path: PathBuf },
    #[error(transparent)]
    Images(#[from] crate::registry::RegistryError),
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `helm install ebisu charts/ebisu` into [`OPERATOR_NAMESPACE`] with the
/// chart's defaults plus `settings` (`key=value`, as `--set` takes them),
/// waiting for the operator to be ready. ebisu's images are built and pushed
/// to the cluster's registry first: the chart's default image references
/// are what the pods pull.
pub fn install_operator(k: &Kubectl, settings: &[&str]) -> Result<(), EbisuError> {
    crate::registry::push_ebisu_images()?;
    // The operator's pods comply with Pod Security `restricted` too.
    if k.try_run(&["get", "namespace", OPERATOR_NAMESPACE])
        .is_err()
    {
        create_restricted_namespace(k, OPERATOR_NAMESPACE)?;
    }
    let chart = workspace_path("charts/ebisu");
    let chart = chart.display().to_string();
    let mut args = vec![
        "install",
        "ebisu",
        &chart,
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "120s",
    ];
    // The local EC2 API's endpoint and credentials (made by `testcluster up`).
    args.extend(["--set", "aws.envFromSecret=local-ec2"]);
    for setting in settings {
        args.extend(["--set", setting]);
    }
    helm(k, &args).map(drop)
}

/// Creates namespace `ns` with Pod Security `restricted` enforced.
pub fn create_restricted_namespace(k: &Kubectl, ns: &str) -> Result<(), EbisuError> {
    k.try_run(&["create", "namespace", ns])?;
    k.try_run(&[
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    Ok(())
}

/// Runs the pinned helm against the local cluster; its stdout.
pub fn helm(k: &Kubectl, args: &[&str]) -> Result<String, EbisuError> {
    Ok(k.run_program(&controlplane::bin_dir().join("helm"), args)?)
}

/// Waits until the MySQLCluster reports `ready` ready instances, phase
/// Running and a primary; returns the primary's pod name.
pub fn wait_running(
    k: &Kubectl,
    ns: &str,
    name: &str,
    ready: u32,
    timeout: Duration,
) -> Result<String, EbisuError> {
    let wanted = format!("{ready} Running");
    Ok(k.wait(
        &format!("{ns}/{name}: {ready} ready instances and a primary"),
        timeout,
        |k| {
            let status = k.jsonpath(
                ns,
                &format!("mysqlcluster/{name}"),
                "{.status.readyReplicas} {.status.phase}|{.status.currentPrimary}",
            );
            let (counts, primary) = status.split_once('|')?;
            (counts == wanted && !primary.is_empty()).then(|| primary.to_owned())
        },
    )?)
}

/// The address a Service name resolves to inside the cluster (the cluster
/// hosts file is what pods resolve names with).
pub fn resolve(layout: &Layout, ns: &str, name: &str) -> Result<String, EbisuError> {
    let path = layout.hosts_file(ns);
    let hosts = std::fs::read_to_string(&path).map_err(|source| EbisuError::Read {
        path: path.clone(),
        source,
    })?;
    hosts
        .lines()
        .find(|line| {
            line.split_whitespace()
                .skip(1)
                .any(|n| n == name || n.starts_with(&format!("{name}.")))
        })
        .and_then(|line| line.split_whitespace().next().map(str::to_owned))
        .ok_or_else(|| EbisuError::NoAddress {
            name: name.to_owned(),
            path,
        })
}

/// Runs `statement` as root over the pod's server socket: what a user does
/// with `kubectl exec` (the local cluster has no exec).
pub fn root_sql(
    k: &Kubectl,
    layout: &Layout,
    ns: &str,
    cluster: &str,
    pod: &str,
    statement: &str,
) -> Result<String, EbisuError> {
    let password = k.try_run(&[
        "-n",
        ns,
        "get",
        &format!("secret/{cluster}-credentials"),
        "-o",
        r#"go-template={{index .data "root-password" | base64decode}}"#,
    ])?;
    let uid = k.jsonpath(ns, &format!("pod/{pod}"), "{.metadata.uid}");
    let socket = layout
        .pods()
        .join(format!("{ns}_{pod}_{uid}"))
        .join("volumes/run/mysqld.sock");
    // The real path is longer than a UNIX socket address may be.
    let short = std::env::temp_dir().join(format!("ebisu-{}-{pod}.sock", std::process::id()));
    let _ = std::fs::remove_file(&short);
    std::os::unix::fs::symlink(&socket, &short).map_err(|source| EbisuError::Read {
        path: socket.clone(),
        source,
    })?;
    let result = mariadb(
        &["-S", &short.display().to_string(), "-uroot"],
        &password,
        statement,
        pod,
    );
    let _ = std::fs::remove_file(&short);
    result
}

/// Runs `statement` as `user` against `host` over the network.
pub fn sql(host: &str, user: &str, password: &str, statement: &str) -> Result<String, EbisuError> {
    mariadb(
        &["-h", host, &format!("-u{user}")],
        password,
        statement,
        host,
    )
}

/// The password travels in the environment, never on a command line `ps` shows.
fn mariadb(
    args: &[&str],
    password: &str,
    statement: &str,
    target: &str,
) -> Result<String, EbisuError> {
    let out = Command::new("mariadb")
        .env("MYSQL_PWD", password)
        .args(["--skip-ssl", "--connect-timeout=3", "-N", "-B"])
        .args(args)
        .args(["-e", statement])
        .output()
        .map_err(|e| EbisuError::Sql {
            target: target.to_owned(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(EbisuError::Sql {
            target: target.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The operator's diagnostics for a failed wait: pods with roles, the
/// cluster's status and the operator's last log lines.
pub fn diagnostics(k: &Kubectl, ns: &str, cluster: &str) -> String {
    let pods = k
        .try_run(&[
            "-n",
            ns,
            "get",
            "pods",
            "-o",
            "wide",
            "-L",
            "ebisu.dev/role",
        ])
        .unwrap_or_default();
    let status = k.jsonpath(ns, &format!("mysqlcluster/{cluster}"), "{.status}");
    let nodes = k
        .try_run(&[
            "get",
            "nodes",
            "-o",
            "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status,TAINTS:.spec.taints[*].key",
        ])
        .unwrap_or_default();
    // Every operator pod's tail: the leader may be either.
    let operator: String = k
        .jsonpath(OPERATOR_NAMESPACE, "pods", "{.items[*].metadata.name}")
        .split_whitespace()
        .map(|pod| {
            let log = k
                .try_run(&["-n", OPERATOR_NAMESPACE, "logs", pod, "--tail=30"])
                .unwrap_or_default();
            format!("--- {pod}\n{log}\n")
        })
        .collect();
    // Each instance's init step and agent: why a copy, a replay or
    // replication went wrong is in them.
    let instances: String = k
        .try_run(&[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            &format!("ebisu.dev/cluster={cluster}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .unwrap_or_default()
        .split_whitespace()
        .flat_map(|pod| ["init", "agent"].map(move |container| (pod, container)))
        .map(|(pod, container)| {
            let log = k
                .try_run(&["-n", ns, "logs", pod, "-c", container, "--tail=25"])
                .unwrap_or_default();
            format!("--- {pod} {container}\n{log}\n")
        })
        .collect();
    format!(
        "pods:\n{pods}\nnodes:\n{nodes}\nstatus: {status}\noperator:\n{operator}\ninstances:\n{instances}"
    )
}
