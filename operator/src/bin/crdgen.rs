//! Writes the MySQLCluster CRD to `crds/` and the Helm chart's `crds/` (or to
//! stdout with `-`).

use std::{path::PathBuf, process::ExitCode};

use ebisu_operator::crd::{CHART_CRD_PATH, CRD_PATH, crd_yaml};

fn main() -> ExitCode {
    let yaml = match crd_yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("failed to render the CRD: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("-") {
        print!("{yaml}");
        return ExitCode::SUCCESS;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for relative in [CRD_PATH, CHART_CRD_PATH] {
        let path = root.join(relative);
        if let Err(e) = std::fs::write(&path, &yaml) {
            eprintln!("failed to write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {relative}");
    }
    ExitCode::SUCCESS
}
