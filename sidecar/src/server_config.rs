//! The server's my.cnf: the ConfigMap's common part, the part for the role the
//! server starts in, and this instance's identity, written atomically so the
//! server never reads half a file.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use ebisu_api::names::{CONFIG_COMMON, CONFIG_PRIMARY, CONFIG_REPLICA};

use crate::identity::{Identity, StartRole};

/// Why the configuration could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A ConfigMap part is missing or unreadable.
    #[error("failed to read config part {path}: {source}")]
    ReadPart {
        /// The part's path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The final file could not be written.
    #[error("failed to write server config {path}: {source}")]
    Write {
        /// The file's path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Renders my.cnf from the parts' contents. The identity comes last so that no
/// part can override it.
pub fn render(common: &str, role_part: &str, identity: &Identity) -> String {
    let mut cnf = String::with_capacity(common.len() + role_part.len() + 160);
    cnf.push_str("# Written by ebisu-sidecar init; changes are lost on restart.\n");
    for part in [common, role_part] {
        cnf.push_str(part);
        if !part.ends_with('\n') {
            cnf.push('\n');
        }
    }
    cnf.push_str("[mysqld]\n");
    cnf.push_str(&format!("server_id = {}\n", identity.server_id));
    cnf.push_str(&format!("report_host = {}\n", identity.report_host));
    cnf
}

/// Reads the parts from `parts_dir` and writes my.cnf to `output`.
pub fn write(parts_dir: &Path, output: &Path, identity: &Identity) -> Result<(), Error> {
    let read = |name: &str| {
        let path = parts_dir.join(name);
        fs::read_to_string(&path).map_err(|source| Error::ReadPart { path, source })
    };
    let role_part = match identity.role {
        StartRole::Primary => CONFIG_PRIMARY,
        StartRole::Replica => CONFIG_REPLICA,
    };
    let cnf = render(&read(CONFIG_COMMON)?, &read(role_part)?, identity);
    write_atomically(output, cnf.as_bytes()).map_err(|source| Error::Write {
        path: output.to_owned(),
        source,
    })
}

/// Writes `contents` to a temporary file beside `path`, syncs it and renames it over `path`.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path)?;
    tmp.1.write_all(contents)?;
    tmp.1.sync_all()?;
    fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path, target: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    Ok((tmp, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: StartRole) -> Identity {
        Identity {
            pod_name: "orders-1".to_owned(),
            ordinal: 1,
            server_id: 101,
            report_host: "orders-1.orders.shop.svc.cluster.local".to_owned(),
            role,
        }
    }

    #[test]
    fn identity_comes_after_the_parts() {
        let cnf = render(
            "[mysqld]\nread_only = ON",
            "[mysqld]\nrpl_semi_sync_slave_enabled = ON\n",
            &identity(StartRole::Replica),
        );
        let common = cnf.find("read_only = ON").expect("common");
        let role = cnf.find("rpl_semi_sync_slave_enabled").expect("role part");
        let id = cnf.find("server_id = 101").expect("server id");
        assert!(common < role && role < id, "{cnf}");
        assert!(cnf.contains("report_host = orders-1.orders.shop.svc.cluster.local\n"));
    }

    #[test]
    fn role_picks_the_part_and_file_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CONFIG_COMMON), "[mysqld]\nread_only = ON\n").expect("common");
        fs::write(
            dir.path().join(CONFIG_PRIMARY),
            "[mysqld]\nrpl_semi_sync_master_enabled = ON\n",
        )
        .expect("primary");
        fs::write(
            dir.path().join(CONFIG_REPLICA),
            "[mysqld]\nrpl_semi_sync_slave_enabled = ON\n",
        )
        .expect("replica");
        let out = dir.path().join("my.cnf");
        fs::write(&out, "stale").expect("stale file");

        write(dir.path(), &out, &identity(StartRole::Primary)).expect("written");
        let cnf = fs::read_to_string(&out).expect("read");
        assert!(cnf.contains("rpl_semi_sync_master_enabled = ON"));
        assert!(!cnf.contains("rpl_semi_sync_slave_enabled"));
        assert!(!cnf.contains("stale"));

        write(dir.path(), &out, &identity(StartRole::Replica)).expect("written");
        assert!(
            fs::read_to_string(&out)
                .expect("read")
                .contains("rpl_semi_sync_slave_enabled = ON")
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn missing_part_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write(
            dir.path(),
            &dir.path().join("my.cnf"),
            &identity(StartRole::Primary),
        )
        .expect_err("no parts");
        assert!(err.to_string().contains("common.cnf"), "{err}");
    }
}
