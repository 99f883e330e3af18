//! Writes the MySQLCluster CRD to `crds/` (or to stdout with `-`).

use std::{path::PathBuf, process::ExitCode};

use ebisu_operator::crd::{CRD_PATH, crd_yaml};

fn main() -> ExitCode {
    let yaml = match crd_yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("failed to render the CRD: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::env::args().nth(1).as_deref() {
        Some("-") => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        other => {
            let path = other.map_or_else(
                || {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join(CRD_PATH)
                },
                PathBuf::from,
            );
            match std::fs::write(&path, yaml) {
                Ok(()) => {
                    eprintln!("wrote {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("failed to write {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}
