//! Writes the CRDs (MySQLCluster, MySQLBackup) to `crds/` and the Helm
//! chart's `crds/` (or to stdout with `-`).

use std::{path::PathBuf, process::ExitCode};

use ebisu_operator::crd::{CRD_DIRS, crd_files};

fn main() -> ExitCode {
    let files = match crd_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("failed to render the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("-") {
        for (_, yaml) in &files {
            print!("---\n{yaml}");
        }
        return ExitCode::SUCCESS;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in CRD_DIRS {
        for (name, yaml) in &files {
            let path = root.join(dir).join(name);
            if let Err(e) = std::fs::write(&path, yaml) {
                eprintln!("failed to write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {dir}/{name}");
        }
    }
    ExitCode::SUCCESS
}
