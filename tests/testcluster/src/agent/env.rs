//! A container's environment as the kubelet builds it: `envFrom`, `env`
//! (values with `$(VAR)` expansion, secretKeyRef, configMapKeyRef, fieldRef,
//! resourceFieldRef), plus the `KUBERNETES_SERVICE_*` variables pointing at
//! the apiserver's bridge address (there is no ClusterIP routing here), and
//! the local S3's endpoint and keys, as EKS Pod Identity gives every pod of
//! a service account its role's credentials (a container's own `env` and
//! `envFrom` still win).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::layout::{APISERVER_PORT, BRIDGE_ADDR};

/// Why the environment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced Secret or ConfigMap (or key) is missing.
    #[error("failed to resolve env {var}: {detail}")]
    Missing {
        /// The variable.
        var: String,
        /// What is missing.
        detail: String,
    },
}

/// Expands `$(NAME)` references against `env`; `$$` escapes, unknown names stay.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            if let Some(end) = body.find(')') {
                let name = &body[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&format!("$({name})")),
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API field path.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let from_map = |map: &BTreeMap<String, String>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.get(key).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.uid(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => status.and_then(|s| s.host_ip.clone()),
        _ if path.starts_with("metadata.labels['") => from_map(pod.labels(), "metadata.labels['"),
        _ if path.starts_with("metadata.annotations['") => {
            from_map(pod.annotations(), "metadata.annotations['")
        }
        "metadata.labels" => Some(
            pod.labels()
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                .collect(),
        ),
        _ => None,
    }
}

async fn secret_key(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let bytes = secret.data?.get(key)?.0.clone();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

async fn config_key(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let map = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    map.data?.get(key).cloned()
}

/// Builds the environment of `container` in `pod`.
pub async fn resolve(
    client: &Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.namespace().unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("HOSTNAME".to_owned(), pod.name_any()),
        ("HOME".to_owned(), "/root".to_owned()),
        ("KUBERNETES_SERVICE_HOST".to_owned(), BRIDGE_ADDR.to_owned()),
        (
            "KUBERNETES_SERVICE_PORT".to_owned(),
            APISERVER_PORT.to_string(),
        ),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".to_owned(),
            APISERVER_PORT.to_string(),
        ),
        (
            "KUBERNETES_PORT".to_owned(),
            format!("tcp://{BRIDGE_ADDR}:{APISERVER_PORT}"),
        ),
        ("AWS_ENDPOINT_URL_S3".to_owned(), crate::ec2::endpoint()),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            crate::ec2::ACCESS_KEY_ID.to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            crate::ec2::SECRET_ACCESS_KEY.to_owned(),
        ),
        ("AWS_REGION".to_owned(), crate::ec2::REGION.to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ];
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            match Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get(&r.name)
                .await
            {
                Ok(map) => {
                    for (k, v) in map.data.unwrap_or_default() {
                        env.push((format!("{prefix}{k}"), v));
                    }
                }
                Err(_) if r.optional == Some(true) => {}
                Err(e) => {
                    return Err(EnvError::Missing {
                        var: format!("envFrom configMap {}", r.name),
                        detail: e.to_string(),
                    });
                }
            }
        }
        if let Some(r) = &source.secret_ref {
            match Api::<Secret>::namespaced(client.clone(), &ns)
                .get(&r.name)
                .await
            {
                Ok(secret) => {
                    for (k, v) in secret.data.unwrap_or_default() {
                        env.push((
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        ));
                    }
                }
                Err(_) if r.optional == Some(true) => {}
                Err(e) => {
                    return Err(EnvError::Missing {
                        var: format!("envFrom secret {}", r.name),
                        detail: e.to_string(),
                    });
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let missing = |detail: String| EnvError::Missing {
            var: var.name.clone(),
            detail,
        };
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                match secret_key(client, &ns, &r.name, &r.key).await {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => return Err(missing(format!("secret {} has no key {}", r.name, r.key))),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                match config_key(client, &ns, &r.name, &r.key).await {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(missing(format!(
                            "configMap {} has no key {}",
                            r.name, r.key
                        )));
                    }
                }
            } else if let Some(r) = &from.field_ref {
                field_value(pod, &r.field_path)
                    .ok_or_else(|| missing(format!("unsupported fieldPath {}", r.field_path)))?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(container, &r.resource)
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or_default(), &env)
        };
        env.retain(|(k, _)| k != &var.name);
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// `limits.cpu`/`requests.memory`... of the container, else the node's size.
fn resource_value(container: &Container, resource: &str) -> String {
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let resources = container.resources.as_ref();
    let map = match kind {
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => resources.and_then(|r| r.limits.as_ref()),
    };
    match map.and_then(|m| m.get(name)) {
        Some(q) => q.0.clone(),
        None if name == "cpu" => "4".to_owned(),
        None => "17179869184".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_known_names_and_keeps_unknown_and_escapes() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x$(A)y$(B)$$(A)", &env), "x1y$(B)$(A)");
    }

    #[test]
    fn label_field_paths_read_labels() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"role": "primary"}}
        }))
        .unwrap();
        assert_eq!(
            field_value(&pod, "metadata.labels['role']").unwrap(),
            "primary"
        );
        assert_eq!(field_value(&pod, "metadata.labels['none']").unwrap(), "");
    }
}
