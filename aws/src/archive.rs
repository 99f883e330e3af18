//! The binary log archive in S3 (its format: `ebisu_mysql::archive`):
//! every manifest under a prefix, one object's bytes, deleting objects,
//! and the checksum manifests carry.

use aws_sdk_s3::Client;
use ebisu_mysql::archive::{Manifest, replay::Listed};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

/// How many manifests are read at once.
const READ_AT_ONCE: usize = 16;

/// How long one S3 call on the archive may take, its retries included
/// (the archiving agent's and the replay's clients).
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An S3 call that failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} in S3: {why}")]
pub struct Error {
    /// What was tried.
    pub action: String,
    /// S3's error, or the transport's.
    pub why: String,
}

/// Maps a failed call to [`Error`].
pub fn failed<E: std::error::Error>(action: impl Into<String>) -> impl FnOnce(E) -> Error {
    let action = action.into();
    move |error| Error {
        action,
        why: aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
    }
}

/// Every manifest under `prefix` (without its trailing `/`); one removed
/// between the listing and its read is left out.
pub async fn manifests(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<Listed>, Error> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/manifest/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(failed(format!(
            "list the archive's manifests in s3://{bucket}/{prefix}"
        )))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    let listed: Vec<Option<Listed>> = futures::stream::iter(keys)
        .map(|key| async move {
            // Gone since it was listed: retention removed its segment.
            let Some(bytes) = get_if_there(client, bucket, &key).await? else {
                return Ok(None);
            };
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(failed(format!("read manifest {key}")))?;
            Ok(Some(Listed { key, manifest }))
        })
        .buffer_unordered(READ_AT_ONCE)
        .try_collect()
        .await?;
    Ok(listed.into_iter().flatten().collect())
}

/// One object's bytes.
pub async fn get(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
    get_if_there(client, bucket, key)
        .await?
        .ok_or_else(|| Error {
            action: format!("read {key}"),
            why: "NoSuchKey: the object does not exist".to_owned(),
        })
}

/// One object's bytes, `None` when there is no such object.
async fn get_if_there(client: &Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let object = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(failed(format!("read {key}"))(error)),
    };
    Ok(Some(
        object
            .body
            .collect()
            .await
            .map_err(failed(format!("read {key}")))?
            .into_bytes()
            .to_vec(),
    ))
}

/// Deletes `keys`, up to 1000 a call (S3's DeleteObjects); a key S3 could
/// not delete is an error naming it.
pub async fn delete(client: &Client, bucket: &str, keys: &[String]) -> Result<(), Error> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    for chunk in keys.chunks(1000) {
        let objects = chunk
            .iter()
            .map(|key| ObjectIdentifier::builder().key(key).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed("name the objects to delete"))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(failed("name the objects to delete"))?;
        let answer = client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(failed(format!(
                "delete {} objects from s3://{bucket}",
                chunk.len()
            )))?;
        if let Some(refused) = answer.errors().first() {
            return Err(Error {
                action: format!("delete {}", refused.key().unwrap_or("an object")),
                why: refused.message().unwrap_or("refused").to_owned(),
            });
        }
    }
    Ok(())
}

/// SHA-256 of `bytes`, hex, as manifests carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
