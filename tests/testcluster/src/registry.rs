//! The local cluster's OCI registry: go-containerregistry's `crane registry
//! serve` on loopback, started with the control plane, which the nodes pull
//! ebisu's images from. As a containerd mirror would, it stands in for
//! [`MIRRORED`] registries: `ghcr.io/ebisu-dev/ebisu-operator:0.1.0` is
//! pulled as `127.0.0.1:25000/ebisu-dev/ebisu-operator:0.1.0`. Images get
//! there with `tests/build-images.sh --push` ([`push_ebisu_images`]).

use std::path::{Path, PathBuf};

use crate::layout::{REGISTRY_PORT, workspace_path};

/// crane's version, as `tests/build-images.sh` installs it.
pub const CRANE_VERSION: &str = "v0.22.1";

/// The registries whose images the nodes pull from the local registry
/// instead: where the chart's images are published.
pub const MIRRORED: &[&str] = &["ghcr.io"];

/// Where ebisu's images are pushed in the local registry: the chart's
/// default repositories (`ghcr.io/ebisu-dev/...`) through the mirror.
pub const EBISU_PREFIX: &str = "ebisu-dev";

/// Why ebisu's images could not be pushed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The build script failed or could not start.
    #[error("failed to build and push ebisu's images with tests/build-images.sh: {0}")]
    Push(String),
}

/// The cache outside the clone that the scripts install tools into.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("EBISU_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/ebisu")
        },
        PathBuf::from,
    )
}

/// The crane binary `tests/build-images.sh` installs.
pub fn crane() -> PathBuf {
    cache_dir()
        .join("tools")
        .join(format!("crane-{CRANE_VERSION}"))
        .join("crane")
}

/// The registry's address (`host:port`), on loopback: only the nodes' pulls
/// and the build script's pushes reach it.
pub fn address() -> String {
    format!("127.0.0.1:{REGISTRY_PORT}")
}

/// The arguments that serve the registry, its blobs on disk under `dir`.
pub fn serve_args(dir: &Path) -> Vec<String> {
    vec![
        "registry".to_owned(),
        "serve".to_owned(),
        "--address".to_owned(),
        address(),
        "--disk".to_owned(),
        dir.display().to_string(),
    ]
}

/// Builds ebisu's images (incrementally: the binaries and layers are cached
/// in `target/`) and pushes them to the local registry under
/// [`EBISU_PREFIX`], tagged with the workspace version, which the chart's
/// defaults name. `EBISU_IMAGE_PROFILE` picks the cargo profile (the
/// benchmarks use `release`), `EBISU_IMAGE_PLATFORMS` the platforms.
pub fn push_ebisu_images() -> Result<(), RegistryError> {
    let script = workspace_path("tests/build-images.sh");
    let mut command = std::process::Command::new("bash");
    command
        .arg(script)
        .args(["--push", &format!("{}/{EBISU_PREFIX}", address())]);
    if let Ok(profile) = std::env::var("EBISU_IMAGE_PROFILE") {
        command.args(["--profile", &profile]);
    }
    if let Ok(platforms) = std::env::var("EBISU_IMAGE_PLATFORMS") {
        command.args(["--platforms", &platforms]);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| RegistryError::Push(e.to_string()))?;
    if !output.status.success() {
        // The build's last lines say what failed.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.trim().lines().collect();
        return Err(RegistryError::Push(
            lines[lines.len().saturating_sub(30)..].join("\n"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crane_is_the_version_the_build_script_installs() {
        let script = std::fs::read_to_string(workspace_path("tests/build-images.sh")).unwrap();
        assert!(
            script.contains(&format!("CRANE_VERSION={CRANE_VERSION}\n")),
            "tests/build-images.sh installs another crane than {CRANE_VERSION}"
        );
    }
}
