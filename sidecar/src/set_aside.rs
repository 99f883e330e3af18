//! Setting a data directory's contents aside before a re-seed: the operator
//! found transactions the primary lacks, so this copy may not rejoin; its
//! files are moved (never deleted) into `.ebisu-kept/<when>/` on the same
//! volume, for the user to inspect, and the now empty directory is seeded
//! afresh. The agent records the request ([`request`]); the next `init`
//! carries it out ([`carry_out`]) before it looks at the directory. Moving
//! is resumable: an interrupted move goes on into the same `.partial`
//! folder, and the request marker moves last.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
};

use ebisu_api::names::{KEPT_DIR, RESEED_MARKER};

/// Why setting data aside failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {path}: {source}")]
pub struct Error {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error {
        action,
        path,
        source,
    }
}

/// Entries of a data directory that are never data of the server: the
/// file system's own and what was set aside.
pub fn is_not_data(name: &OsStr) -> bool {
    name == "lost+found" || name == KEPT_DIR
}

/// Records that `data_dir` must be set aside and re-seeded, with `reason`.
pub fn request(data_dir: &Path, reason: &str) -> Result<(), Error> {
    let marker = data_dir.join(RESEED_MARKER);
    let tmp = data_dir.join(format!("{RESEED_MARKER}.tmp"));
    std::fs::write(&tmp, format!("{reason}\n")).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &marker).map_err(io("write", &marker))
}

/// Whether a re-seed was requested and not carried out yet.
pub fn requested(data_dir: &Path) -> bool {
    data_dir.join(RESEED_MARKER).exists()
}

/// Moves everything in `data_dir` into `.ebisu-kept/<stamp>/`; returns
/// where it went, `None` when nothing was requested.
pub fn carry_out(data_dir: &Path, stamp: &str) -> Result<Option<PathBuf>, Error> {
    if !requested(data_dir) {
        return Ok(None);
    }
    let kept = data_dir.join(KEPT_DIR);
    std::fs::create_dir_all(&kept).map_err(io("create", &kept))?;
    // Resume an interrupted move rather than splitting it over two folders.
    let partial = std::fs::read_dir(&kept)
        .map_err(io("list", &kept))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "partial"))
        .unwrap_or_else(|| kept.join(format!("{stamp}.partial")));
    std::fs::create_dir_all(&partial).map_err(io("create", &partial))?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .map_err(io("list", data_dir))?
        .flatten()
        .filter(|e| !is_not_data(&e.file_name()))
        .map(|e| e.path())
        .collect();
    // The request goes last: while it is there, the move is not finished.
    entries.sort_by_key(|p| p.file_name() == Some(OsStr::new(RESEED_MARKER)));
    for entry in entries {
        let Some(name) = entry.file_name() else {
            continue;
        };
        let to = partial.join(name);
        std::fs::rename(&entry, &to).map_err(io("move", &entry))?;
    }
    let done = partial.with_extension("");
    std::fs::rename(&partial, &done).map_err(io("finish", &partial))?;
    Ok(Some(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn a_requested_reseed_moves_everything_aside_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        touch(&data.join("ibdata1"));
        touch(&data.join("shop/orders.ibd"));
        std::fs::create_dir_all(data.join("lost+found")).unwrap();
        assert_eq!(carry_out(data, "t1").unwrap(), None, "nothing requested");
        request(data, "errant 0-101-3").unwrap();
        let kept = carry_out(data, "t1").unwrap().expect("set aside");
        assert_eq!(kept, data.join(KEPT_DIR).join("t1"));
        assert!(kept.join("ibdata1").exists() && kept.join("shop/orders.ibd").exists());
        assert!(
            kept.join(RESEED_MARKER).exists(),
            "the reason travels along"
        );
        let left: Vec<_> = std::fs::read_dir(data)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.iter().all(|n| is_not_data(n)), "{left:?}");
        assert!(!requested(data));
    }

    #[test]
    fn an_interrupted_move_resumes_into_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        request(data, "diverged").unwrap();
        touch(&data.join("ibdata1"));
        // As if the first attempt moved one file and died.
        touch(
            &data
                .join(KEPT_DIR)
                .join("t1.partial")
                .join("aria_log.00000001"),
        );
        let kept = carry_out(data, "t2").unwrap().expect("set aside");
        assert_eq!(kept, data.join(KEPT_DIR).join("t1"));
        assert!(kept.join("aria_log.00000001").exists() && kept.join("ibdata1").exists());
    }

    #[test]
    fn earlier_kept_copies_stay_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        touch(&data.join(KEPT_DIR).join("t0").join("ibdata1"));
        touch(&data.join("ibdata1"));
        request(data, "again").unwrap();
        carry_out(data, "t1").unwrap();
        assert!(data.join(KEPT_DIR).join("t0").join("ibdata1").exists());
        assert!(data.join(KEPT_DIR).join("t1").join("ibdata1").exists());
    }
}
