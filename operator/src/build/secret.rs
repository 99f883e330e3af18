//! The `<name>-credentials` Secret: server accounts and the clone token,
//! generated once with strong random values and never overwritten. Only keys
//! that are missing are ever added.

use std::collections::BTreeMap;

use ebisu_api::names::{self, secret_keys};
use k8s_openapi::{ByteString, api::core::v1::Secret};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// Length of generated passwords and tokens: 32 alphanumeric characters, about 190 bits.
pub const SECRET_LENGTH: usize = 32;

/// Fixed account names; only passwords and the token are random.
fn fixed_value(key: &str) -> Option<&'static str> {
    match key {
        secret_keys::OPERATOR_USER => Some("ebisu_operator"),
        secret_keys::REPLICATION_USER => Some("ebisu_repl"),
        secret_keys::CLONE_USER => Some("ebisu_clone"),
        secret_keys::MONITOR_USER => Some("ebisu_monitor"),
        _ => None,
    }
}

/// The keys `cluster`'s Secret holds: every service account's, and the
/// application owner's password when `spec.database` asks for one.
pub fn keys(cluster: &ValidatedCluster) -> Vec<&'static str> {
    let mut keys = secret_keys::ALL.to_vec();
    if cluster.database.is_some() {
        keys.push(secret_keys::APP_PASSWORD);
    }
    keys
}

/// The entries of `keys` that `existing` lacks (all of them when there is
/// no Secret yet). An entry that exists but is empty is treated as missing:
/// an empty password is never acceptable. `generate` returns a fresh
/// random secret per call.
pub fn missing_entries(
    keys: &[&'static str],
    existing: Option<&BTreeMap<String, ByteString>>,
    mut generate: impl FnMut() -> String,
) -> BTreeMap<String, String> {
    keys.iter()
        .filter(|key| {
            existing
                .and_then(|data| data.get(**key))
                .is_none_or(|v| v.0.is_empty())
        })
        .map(|key| {
            let value = fixed_value(key).map_or_else(&mut generate, str::to_owned);
            ((*key).to_owned(), value)
        })
        .collect()
}

/// The shortest password or token ebisu accepts from a user's Secret.
pub const MIN_SECRET_LENGTH: usize = 16;

/// The passwords and the token in `existing` that are too weak to guard a
/// database reachable from the pod network: shorter than
/// [`MIN_SECRET_LENGTH`], or one character repeated.
pub fn weak_entries(
    keys: &[&'static str],
    existing: Option<&BTreeMap<String, ByteString>>,
) -> Vec<&'static str> {
    keys.iter()
        .copied()
        .filter(|key| fixed_value(key).is_none())
        .filter(|key| {
            existing
                .and_then(|data| data.get(*key))
                .filter(|v| !v.0.is_empty())
                .is_some_and(|v| v.0.len() < MIN_SECRET_LENGTH || v.0.iter().all(|b| *b == v.0[0]))
        })
        .collect()
}

/// A Secret carrying `entries`, for creating it or adding missing keys. It
/// has ebisu's labels but no owner reference: it outlives the cluster, as
/// the volumes whose accounts it holds do.
pub fn build(cluster: &ValidatedCluster, entries: BTreeMap<String, String>) -> Secret {
    let mut metadata = child_meta(cluster, names::credentials_secret(&cluster.name));
    metadata.owner_references = None;
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        string_data: Some(entries),
        ..Secret::default()
    }
}

/// A strong random secret from the thread's CSPRNG.
pub fn generate_secret() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_LENGTH)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("generated-{n}")
        }
    }

    #[test]
    fn a_new_cluster_gets_every_entry() {
        let entries = missing_entries(&secret_keys::ALL, None, counter());
        assert_eq!(entries.len(), secret_keys::ALL.len());
        assert_eq!(entries[secret_keys::OPERATOR_USER], "ebisu_operator");
        assert_eq!(entries[secret_keys::REPLICATION_USER], "ebisu_repl");
        for key in [
            secret_keys::ROOT_PASSWORD,
            secret_keys::OPERATOR_PASSWORD,
            secret_keys::REPLICATION_PASSWORD,
            secret_keys::CLONE_PASSWORD,
            secret_keys::CLONE_TOKEN,
            secret_keys::MONITOR_PASSWORD,
        ] {
            assert!(entries[key].starts_with("generated-"), "{key}");
        }
        let distinct: std::collections::BTreeSet<_> = entries.values().collect();
        assert_eq!(
            distinct.len(),
            entries.len(),
            "every secret is generated separately"
        );
    }

    #[test]
    fn existing_entries_are_never_replaced() {
        let existing: BTreeMap<String, ByteString> = secret_keys::ALL
            .iter()
            .map(|k| ((*k).to_owned(), ByteString(b"kept".to_vec())))
            .collect();
        assert!(missing_entries(&secret_keys::ALL, Some(&existing), counter()).is_empty());
    }

    #[test]
    fn only_missing_or_empty_entries_are_added() {
        let mut existing: BTreeMap<String, ByteString> = secret_keys::ALL
            .iter()
            .map(|k| ((*k).to_owned(), ByteString(b"kept".to_vec())))
            .collect();
        existing.remove(secret_keys::CLONE_TOKEN);
        existing.insert(
            secret_keys::ROOT_PASSWORD.to_owned(),
            ByteString(Vec::new()),
        );
        let added = missing_entries(&secret_keys::ALL, Some(&existing), counter());
        assert_eq!(
            added.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![secret_keys::CLONE_TOKEN, secret_keys::ROOT_PASSWORD]
        );
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert_eq!(a.len(), SECRET_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_secret_outlives_the_cluster_like_its_volumes() {
        let secret = build(
            &validated(BASIC),
            missing_entries(&secret_keys::ALL, None, counter()),
        );
        assert_eq!(secret.metadata.name.as_deref(), Some("orders-credentials"));
        assert_eq!(
            secret.metadata.owner_references, None,
            "never garbage-collected"
        );
        let labels = secret.metadata.labels.expect("labels");
        assert_eq!(
            labels.get(names::LABEL_CLUSTER).map(String::as_str),
            Some("orders")
        );
    }

    #[test]
    fn short_or_repeated_passwords_are_weak_user_names_never() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, ByteString> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect()
        };
        let strong = "s3cret-long-enough-0123";
        let existing = data(&[
            (secret_keys::ROOT_PASSWORD, "root"),
            (secret_keys::OPERATOR_USER, "op"),
            (secret_keys::OPERATOR_PASSWORD, strong),
            (secret_keys::REPLICATION_PASSWORD, "aaaaaaaaaaaaaaaaaaaa"),
            (secret_keys::CLONE_TOKEN, strong),
        ]);
        assert_eq!(
            weak_entries(&secret_keys::ALL, Some(&existing)),
            vec![
                secret_keys::ROOT_PASSWORD,
                secret_keys::REPLICATION_PASSWORD
            ]
        );
        assert!(
            weak_entries(&secret_keys::ALL, None).is_empty(),
            "missing is not weak"
        );
        let generated = missing_entries(&secret_keys::ALL, None, generate_secret);
        let generated: BTreeMap<String, ByteString> = generated
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect();
        assert!(weak_entries(&secret_keys::ALL, Some(&generated)).is_empty());
    }
}
