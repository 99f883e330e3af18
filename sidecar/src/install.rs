//! `install`: copy this binary to a path in a volume shared with the pod's
//! other containers, so the server's image can run it without shipping it.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

/// Why the binary could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("failed to install the sidecar binary to {path}: {source}")]
pub struct Error {
    path: String,
    #[source]
    source: std::io::Error,
}

/// Copies the running executable to `dest` (atomically) and makes it executable.
pub fn install(dest: &Path) -> Result<(), Error> {
    let err = |source| Error {
        path: dest.display().to_string(),
        source,
    };
    let me = std::env::current_exe().map_err(err)?;
    let contents = fs::read(&me).map_err(err)?;
    crate::server_config::write_atomically(dest, &contents).map_err(err)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_copy_is_executable_and_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("ebisu-sidecar");
        install(&dest).expect("installed");
        let mode = fs::metadata(&dest).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let me = std::env::current_exe().expect("exe");
        assert_eq!(fs::read(&dest).expect("copy"), fs::read(me).expect("self"));
    }
}
