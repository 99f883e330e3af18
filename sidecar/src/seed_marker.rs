//! The note `init` leaves in a freshly copied data directory for the agent:
//! the GTID position the copy corresponds to and where to replicate from.
//! The agent acts on it once, on the server's first start, then removes it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the marker, inside the data directory.
pub const FILE_NAME: &str = "ebisu-seed.json";

/// Why the marker could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// IO on the marker failed.
    #[error("failed to {action} seed marker {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Marker path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The marker's contents are not what init writes.
    #[error("failed to parse seed marker {path}: {source}")]
    Parse {
        /// Marker path.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// What a freshly copied data directory needs to start replicating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedMarker {
    /// GTID position the copy corresponds to (the server's notation).
    pub gtid: String,
    /// Host to replicate from.
    pub source_host: String,
    /// Port to replicate from.
    pub source_port: u16,
    /// The agent the copy came from.
    pub donor: String,
    /// Bytes received.
    #[serde(default)]
    pub bytes: u64,
}

/// The marker's path in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Writes the marker atomically.
pub fn write(data_dir: &Path, marker: &SeedMarker) -> Result<(), Error> {
    let path = path(data_dir);
    let json = serde_json::to_vec_pretty(marker).map_err(|source| Error::Parse {
        path: path.clone(),
        source,
    })?;
    crate::server_config::write_atomically(&path, &json).map_err(|source| Error::Io {
        action: "write",
        path,
        source,
    })
}

/// Reads the marker, `None` when there is none.
pub fn read(data_dir: &Path) -> Result<Option<SeedMarker>, Error> {
    let path = path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Removes the marker once replication is set up.
pub fn remove(data_dir: &Path) -> Result<(), Error> {
    let path = path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "remove",
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).expect("read").is_none());
        let marker = SeedMarker {
            gtid: "0-100-42".to_owned(),
            source_host: "orders-0.orders".to_owned(),
            source_port: 3306,
            donor: "http://orders-1.orders:9080".to_owned(),
            bytes: 1234,
        };
        write(dir.path(), &marker).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(marker));
        remove(dir.path()).expect("remove");
        remove(dir.path()).expect("remove again");
        assert!(read(dir.path()).expect("read").is_none());
    }
}
