//! The binary log archive's format in S3 and the replay plan over it: what
//! the sidecar's archiver writes ([`Manifest`], [`segment_keys`]) and
//! which archived transactions bring a backup to a point ([`replay`]).
//!
//! Objects are `<prefix>/binlog/<server-id>-<file created>-<file>/<offset>`
//! (a segment's bytes, ending on a transaction boundary; the one at offset
//! 0 starts with the file's head: format description and preceding GTIDs)
//! and `<prefix>/manifest/...<offset>.json` (its [`Manifest`], written only
//! after the bytes).

pub mod prune;
pub mod replay;
pub mod runs;

use serde::{Deserialize, Serialize};

/// What one segment's manifest says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The server that wrote the file.
    pub server_id: u32,
    /// The file's name on that server.
    pub file: String,
    /// When the file was begun (its format description's time).
    pub created: u32,
    /// The segment's first byte in the file.
    pub start: u64,
    /// Its end (exclusive), on an event boundary.
    pub end: u64,
    /// The GTIDs the server had written before the file began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preceding: Option<String>,
    /// The segment's transactions (MariaDB: the last of each domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtids: Option<String>,
    /// MariaDB: the segment's first transaction of each domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firsts: Option<String>,
    /// How many transactions it holds.
    pub transactions: u64,
    /// The first and last transaction's commit times, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_us: Option<i64>,
    /// See `first_us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_us: Option<i64>,
    /// SHA-256 of the segment's bytes, hex.
    pub sha256: String,
    /// Every transaction the archiving server held when the round that
    /// uploaded this segment began (its executed GTID set)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// ...read before this time, microseconds: all of it committed by
    /// then. What lets a restore see a segment missing at the end of a
    /// server's range, which leaves no hole in what is archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_at_us: Option<i64>,
}

impl Manifest {
    /// The file's name in the archive: server, creation time, name.
    pub fn file_key(&self) -> String {
        file_key(self.server_id, self.created, &self.file)
    }
}

/// A file's name in the archive: server, creation time, name (a name alone
/// is reused after a failover or a restore).
pub fn file_key(server_id: u32, created: u32, file: &str) -> String {
    format!("{server_id}-{created}-{file}")
}

/// The object keys of a segment's bytes and manifest.
pub fn segment_keys(prefix: &str, file_key: &str, start: u64) -> (String, String) {
    (
        format!("{prefix}/binlog/{file_key}/{start:020}"),
        format!("{prefix}/manifest/{file_key}/{start:020}.json"),
    )
}

/// The key of the bytes a manifest at `manifest_key` describes.
pub fn data_key(manifest_key: &str) -> Option<String> {
    let (prefix, rest) = manifest_key.rsplit_once("/manifest/")?;
    let rest = rest.strip_suffix(".json")?;
    Some(format!("{prefix}/binlog/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_its_bytes() {
        let (data, manifest) = segment_keys("shop/orders", &file_key(101, 7, "bin.000002"), 4);
        assert_eq!(
            data,
            "shop/orders/binlog/101-7-bin.000002/00000000000000000004"
        );
        assert_eq!(data_key(&manifest).as_deref(), Some(data.as_str()));
        assert_eq!(data_key("shop/orders/binlog/x"), None);
    }
}
