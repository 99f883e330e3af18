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

/// The newest copy set aside in `data_dir`, if any (a `.partial` one too:
/// it holds data all the same).
pub fn newest_kept(data_dir: &Path) -> Result<Option<PathBuf>, Error> {
    Ok(kept(data_dir)?
        .into_iter()
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path()))
}

/// The copies set aside in `data_dir` (a `.partial` one too).
fn kept(data_dir: &Path) -> Result<Vec<std::fs::DirEntry>, Error> {
    let kept = data_dir.join(KEPT_DIR);
    if !kept.exists() {
        return Ok(Vec::new());
    }
    Ok(std::fs::read_dir(&kept)
        .map_err(io("list", &kept))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect())
}

/// Bytes the files under `dir` hold.
pub fn bytes_under(dir: &Path) -> Result<u64, Error> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)
            .map_err(io("list", &next))?
            .flatten()
        {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => {
                    total = total.saturating_add(entry.metadata().map_or(0, |m| m.len()));
                }
                _ => {}
            }
        }
    }
    Ok(total)
}

/// Bytes free for unprivileged writers on the file system of `path`.
pub fn free_bytes(path: &Path) -> Result<u64, Error> {
    let stat = rustix::fs::statvfs(path).map_err(|e| Error {
        action: "measure free space on",
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether a fresh copy fits beside what was set aside (M12): the copy is
/// about as large as the data it replaces, and a copy that fills the volume
/// fails only after hours. `Err` says what to do.
pub fn room_for_copy(free: u64, set_aside: u64) -> Result<(), String> {
    // A tenth more for the copy's logs and the server's first writes.
    let needed = set_aside.saturating_add(set_aside / 10);
    if free >= needed {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    Err(format!(
        "the volume has {:.1} GiB free and the fresh copy needs about {:.1} GiB (the data set \
         aside in {KEPT_DIR} holds {:.1} GiB): grow spec.storage.size, or move old copies out \
         of {KEPT_DIR} (they are never deleted by ebisu)",
        gib(free),
        gib(needed),
        gib(set_aside)
    ))
}

/// At most this many copies are kept on a volume: each is a full copy of
/// the data, and ebisu never deletes one, so a further re-seed waits until
/// the user has moved the old ones out.
pub const MAX_KEPT_COPIES: usize = 2;

/// How many copies were set aside in `data_dir` (a `.partial` one too).
pub fn kept_copies(data_dir: &Path) -> Result<usize, Error> {
    Ok(kept(data_dir)?.len())
}

/// Whether one more copy may be set aside when `kept` are there already.
/// `Err` says what to do.
pub fn within_bound(kept: usize) -> Result<(), String> {
    if kept < MAX_KEPT_COPIES {
        return Ok(());
    }
    Err(format!(
        "{kept} earlier copies are set aside in {KEPT_DIR} on its volume already (at most \
         {MAX_KEPT_COPIES}; ebisu never deletes them): copy out what you need and remove them \
         (`kubectl exec <pod> -c mysqld -- rm -rf <data dir>/{KEPT_DIR}/<stamp>`), and the \
         re-seed goes on"
    ))
}

/// Whether `data_dir` may be set aside and seeded afresh now (M12): fewer
/// than [`MAX_KEPT_COPIES`] copies kept, and room for a fresh copy as large
/// as the data there now (setting aside moves it, which takes no room).
/// `Ok(Err(why))` is a refusal; `Err` a failure to look.
pub fn may_set_aside(data_dir: &Path) -> Result<Result<(), String>, Error> {
    if let Err(why) = within_bound(kept_copies(data_dir)?) {
        return Ok(Err(why));
    }
    let mut data = 0u64;
    for entry in std::fs::read_dir(data_dir)
        .map_err(io("list", data_dir))?
        .flatten()
        .filter(|e| !is_not_data(&e.file_name()))
    {
        let path = entry.path();
        data = data.saturating_add(if path.is_dir() {
            bytes_under(&path)?
        } else {
            entry.metadata().map_or(0, |m| m.len())
        });
    }
    Ok(room_for_copy(free_bytes(data_dir)?, data))
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

    #[test]
    fn a_copy_starts_only_when_the_volume_has_room_for_it() {
        let gib = 1u64 << 30;
        assert!(room_for_copy(10 * gib, 5 * gib).is_ok());
        assert!(room_for_copy(11 * gib / 2, 5 * gib).is_ok());
        let why = room_for_copy(5 * gib, 5 * gib).unwrap_err();
        assert!(
            why.contains("5.0 GiB free") && why.contains("grow spec.storage.size"),
            "{why}"
        );
        assert!(room_for_copy(0, 0).is_ok(), "nothing kept, nothing needed");
    }

    #[test]
    fn a_third_copy_is_never_set_aside_and_the_refusal_says_what_to_remove() {
        assert!(within_bound(0).is_ok() && within_bound(1).is_ok());
        let why = within_bound(2).unwrap_err();
        assert!(
            why.contains("remove them") && why.contains(KEPT_DIR),
            "{why}"
        );
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        touch(&data.join("ibdata1"));
        assert_eq!(may_set_aside(data).unwrap(), Ok(()));
        touch(&data.join(KEPT_DIR).join("t0").join("ibdata1"));
        touch(&data.join(KEPT_DIR).join("t1.partial").join("ibdata1"));
        assert_eq!(kept_copies(data).unwrap(), 2);
        assert!(may_set_aside(data).unwrap().is_err());
    }

    #[test]
    fn the_newest_kept_copy_and_its_size_are_found() {
        let dir = tempfile::tempdir().unwrap();
        assert!(newest_kept(dir.path()).unwrap().is_none());
        touch(&dir.path().join(KEPT_DIR).join("100").join("ibdata1"));
        std::fs::write(
            dir.path().join(KEPT_DIR).join("100").join("big"),
            vec![0u8; 4096],
        )
        .unwrap();
        let newest = newest_kept(dir.path()).unwrap().unwrap();
        assert!(newest.ends_with("100"));
        assert_eq!(bytes_under(&newest).unwrap(), 4097);
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }
}
