//! The cluster hosts files that stand in for cluster DNS: one per namespace,
//! bind-mounted as every pod's /etc/hosts. Pods resolve under their hostname
//! and subdomain (`<pod>.<svc>.<ns>.svc.cluster.local`, and `<pod>.<svc>`
//! within the namespace); a Service name resolves to one ready endpoint.
//! Files are rewritten in place (same inode), so bind mounts see updates.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::layout::{BRIDGE_ADDR, Layout};
use crate::stores::Stores;

/// Why a hosts file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// Writing failed.
    #[error("failed to write hosts file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

const DOMAIN: &str = "svc.cluster.local";

/// One name -> address line, with the namespace it belongs to.
struct Entry {
    namespace: String,
    ip: String,
    /// Fully qualified names (visible in every namespace).
    full: Vec<String>,
    /// Short names (visible in the entry's namespace only).
    short: Vec<String>,
}

fn pod_entries(pod: &Pod) -> Option<Entry> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    let ns = pod.namespace()?;
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.clone().unwrap_or_else(|| pod.name_any());
    let mut entry = Entry {
        namespace: ns.clone(),
        ip,
        full: Vec::new(),
        short: vec![hostname.clone()],
    };
    if let Some(sub) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        entry.full.push(format!("{hostname}.{sub}.{ns}.{DOMAIN}"));
        entry.full.push(format!("{hostname}.{sub}.{ns}.svc"));
        entry.short.push(format!("{hostname}.{sub}"));
    }
    Some(entry)
}

/// Renders the hosts file of `namespace`.
fn render(namespace: &str, entries: &[Entry]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (ebisu testcluster).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let _ = writeln!(
        out,
        "{BRIDGE_ADDR}\tkubernetes.default.{DOMAIN} kubernetes.default.svc kubernetes.default{}",
        if namespace == "default" {
            " kubernetes"
        } else {
            ""
        }
    );
    for e in entries {
        let mut names = e.full.clone();
        if e.namespace == namespace {
            names.extend(e.short.iter().cloned());
        }
        if !names.is_empty() {
            let _ = writeln!(out, "{}\t{}", e.ip, names.join(" "));
        }
    }
    out
}

fn service_entries(stores: &Stores) -> Vec<Entry> {
    let mut ready: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for slice in stores.endpoint_slices.state() {
        let Some(svc) = slice.labels().get("kubernetes.io/service-name").cloned() else {
            continue;
        };
        let ns = slice.namespace().unwrap_or_default();
        // The apiserver's own entry is written by `render`.
        if ns == "default" && svc == "kubernetes" {
            continue;
        }
        for endpoint in &slice.endpoints {
            let is_ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if is_ready {
                ready
                    .entry((ns.clone(), svc.clone()))
                    .or_default()
                    .extend(endpoint.addresses.iter().cloned());
            }
        }
    }
    let mut entries = Vec::new();
    for ((ns, svc), mut ips) in ready {
        ips.sort();
        let Some(ip) = ips.first().cloned() else {
            continue;
        };
        entries.push(Entry {
            namespace: ns.clone(),
            ip,
            full: vec![
                format!("{svc}.{ns}.{DOMAIN}"),
                format!("{svc}.{ns}.svc"),
                format!("{svc}.{ns}"),
            ],
            short: vec![svc],
        });
    }
    entries
}

/// Rewrites every namespace's hosts file whose content changed (compared
/// with the file itself: a pod starting writes a placeholder when none
/// exists yet).
pub fn sync(layout: &Layout, stores: &Stores) -> Result<(), HostsError> {
    let mut entries: Vec<Entry> = stores
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| pod_entries(p))
        .collect();
    entries.sort_by(|a, b| a.full.cmp(&b.full).then(a.ip.cmp(&b.ip)));
    entries.extend(service_entries(stores));
    let mut namespaces: Vec<String> = stores
        .pods
        .state()
        .iter()
        .filter_map(|p| p.namespace())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        let text = render(&ns, &entries);
        let path = layout.hosts_file(&ns);
        if std::fs::read_to_string(&path).is_ok_and(|on_disk| on_disk == text) {
            continue;
        }
        let fail = |source| HostsError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        // In place: the bind mounts hold this inode.
        std::fs::write(&path, &text).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ns: &str, ip: &str, full: &[&str], short: &[&str]) -> Entry {
        Entry {
            namespace: ns.to_owned(),
            ip: ip.to_owned(),
            full: full.iter().map(|s| (*s).to_owned()).collect(),
            short: short.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn short_names_resolve_only_in_their_own_namespace() {
        let entries = [entry(
            "a",
            "10.244.1.2",
            &["db-0.db.a.svc.cluster.local"],
            &["db-0", "db-0.db"],
        )];
        let own = render("a", &entries);
        assert!(
            own.contains("10.244.1.2\tdb-0.db.a.svc.cluster.local db-0 db-0.db\n"),
            "{own}"
        );
        let other = render("b", &entries);
        assert!(
            other.contains("10.244.1.2\tdb-0.db.a.svc.cluster.local\n"),
            "{other}"
        );
        assert!(!other.contains(" db-0.db"), "{other}");
    }

    #[test]
    fn the_apiserver_resolves_at_the_bridge_address() {
        let text = render("default", &[]);
        assert!(
            text.contains(&format!(
                "{BRIDGE_ADDR}\tkubernetes.default.svc.cluster.local"
            )),
            "{text}"
        );
    }
}
