//! The nodes' images: what runs for a container's image, pulled from the
//! local registry when it is an OCI image, else from the table of images that
//! stand in for the official database images (which cannot be fetched here):
//!
//! | image                                         | runs                                           |
//! |-----------------------------------------------|------------------------------------------------|
//! | `ghcr.io/...`, `127.0.0.1:25000/...`           | the OCI image from the local registry ([`crate::registry`]; ghcr.io is mirrored there), pulled by reference and unpacked as the container's root; its entrypoint and cmd |
//! | `mariadb:*`, `docker.io/library/mariadb:*`    | the machine's programs as they are (MariaDB 10.11 from Debian 12: `mariadbd`, `mariadb-backup`, `mbstream`, `sh`, ...); default command `mariadbd` |
//! | `mysql:*`, `docker.io/library/mysql:*`        | inside the `sid` root with MySQL 9.7 (`mysqld`, `mysql`, the clone and semi-sync plugins), whatever the tag; default command `mysqld` |
//! | anything else                                 | fails like a pull: `ErrImagePull`              |
//!
//! A pulled image is unpacked once per platform manifest digest under the
//! state directory (`images/<digest>/rootfs`), shared by the nodes; the MySQL
//! root comes from `$EBISU_CACHE/rootfs/mysql-sid-2` (default
//! `$HOME/.cache/ebisu`).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::registry;

/// Why an image cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not in the table nor from a mirrored registry: `ErrImagePull`.
    #[error(
        "failed to pull image \"{0}\": not available in the ebisu test cluster (its registry has ghcr.io's images; mariadb:* and mysql:* are built in)"
    )]
    Unknown(String),
    /// The container has no command and the image has no default one.
    #[error("failed to find a command for image \"{0}\": set the container's command")]
    NoCommand(String),
    /// The image's root file system has not been built.
    #[error(
        "failed to pull image \"{image}\": its root file system {root} is missing; build it with tests/build-rootfs.sh"
    )]
    NoRoot {
        /// The image.
        image: String,
        /// Where its root should be.
        root: String,
    },
    /// The local registry did not give the image.
    #[error(
        "failed to pull image \"{image}\" from the local registry as {reference}: {detail} (push ebisu's images with tests/build-images.sh --push)"
    )]
    Pull {
        /// The image as the pod names it.
        image: String,
        /// What was pulled.
        reference: String,
        /// What went wrong.
        detail: String,
    },
}

/// Where a container's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The machine's own programs; this default command.
    Host(&'static str),
    /// The MySQL root built from Debian `sid`; default command `mysqld`.
    MysqlRoot,
    /// An OCI image, pulled by this reference from the local registry.
    Registry(String),
}

/// What runs for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The root file system it runs inside; the machine's own when `None`.
    pub root: Option<PathBuf>,
    /// What the kubelet reports as `imageID`: the image as the pod names
    /// it, by the digest it was pulled at (an index's, for a multi-platform
    /// image); empty for the built-in database images.
    pub image_id: String,
}

/// An image's entrypoint and cmd, from its config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
}

/// Where the MySQL image's root file system is.
pub fn mysql_root() -> PathBuf {
    registry::cache_dir().join("rootfs/mysql-sid-2")
}

/// Splits a reference into its registry host (when it names one) and the rest.
fn split_registry(image: &str) -> (Option<&str>, &str) {
    match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, image),
    }
}

/// The repository of a reference without registry: no digest, no tag.
fn repository(path: &str) -> &str {
    let path = path.split('@').next().unwrap_or(path);
    let last_slash = path.rfind('/').map_or(0, |i| i + 1);
    match path[last_slash..].find(':') {
        Some(colon) => &path[..last_slash + colon],
        None => path,
    }
}

/// Where `image` comes from, the local registry being at `local`.
pub fn source(image: &str, local: &str) -> Result<Source, ImageError> {
    let (host, path) = split_registry(image);
    if let Some(host) = host
        && (host == local || registry::MIRRORED.contains(&host))
    {
        return Ok(Source::Registry(format!("{local}/{path}")));
    }
    if !matches!(host, None | Some("docker.io")) {
        return Err(ImageError::Unknown(image.to_owned()));
    }
    match repository(path).trim_start_matches("library/") {
        "mariadb" => Ok(Source::Host("mariadbd")),
        "mysql" => Ok(Source::MysqlRoot),
        _ => Err(ImageError::Unknown(image.to_owned())),
    }
}

/// The argv of a container (Kubernetes semantics: `command` replaces the
/// image's entrypoint and drops its cmd; `args` replaces the cmd).
pub fn argv(defaults: &Defaults, command: &[String], args: &[String]) -> Vec<String> {
    let mut argv = if command.is_empty() {
        defaults.entrypoint.clone().unwrap_or_default()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if command.is_empty() {
        argv.extend(defaults.cmd.clone().unwrap_or_default());
    }
    argv
}

/// The platform this machine's containers run: the image index entry pulled.
fn platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    }
}

/// What to run for a container of `image` with the pod's `command` and
/// `args`; an OCI image is pulled into `cache` first.
pub async fn resolve(
    cache: &Path,
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<Resolved, ImageError> {
    let mut image_id = String::new();
    let (defaults, root) = match source(image, &registry::address())? {
        Source::Host(program) => (
            Defaults {
                entrypoint: Some(vec![program.to_owned()]),
                cmd: None,
            },
            None,
        ),
        Source::MysqlRoot => {
            let mysql = mysql_root();
            if !mysql.join(".ebisu-complete").exists() {
                return Err(ImageError::NoRoot {
                    image: image.to_owned(),
                    root: mysql.display().to_string(),
                });
            }
            (
                Defaults {
                    entrypoint: Some(vec!["mysqld".to_owned()]),
                    cmd: None,
                },
                Some(mysql),
            )
        }
        Source::Registry(reference) => {
            let pulled = pull(cache, &reference)
                .await
                .map_err(|detail| ImageError::Pull {
                    image: image.to_owned(),
                    reference: reference.clone(),
                    detail,
                })?;
            image_id = format!("{}@{}", repository_of(image), pulled.digest);
            (pulled.defaults, Some(pulled.root))
        }
    };
    let argv = argv(&defaults, command, args);
    if argv.is_empty() {
        return Err(ImageError::NoCommand(image.to_owned()));
    }
    Ok(Resolved {
        argv,
        root,
        image_id,
    })
}

/// A pulled image.
struct Pulled {
    /// The digest the reference resolved to (an index's, when it is one).
    digest: String,
    root: PathBuf,
    defaults: Defaults,
}

/// The config file a pull keeps beside the root.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Defaults,
}

/// crane's stdout, trimmed.
async fn crane(args: &[&str]) -> Result<String, String> {
    let crane = registry::crane();
    crate::command::run(&crane.display().to_string(), args)
        .await
        .map(|out| out.trim().to_owned())
        .map_err(|e| e.to_string())
}

/// One pull at a time in an agent: containers of the same image share the
/// root the first one unpacks.
static PULLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Numbers each pull's staging directory.
static STAGING: AtomicU64 = AtomicU64::new(0);

/// Pulls `reference`'s manifest for this machine's platform and unpacks its
/// layers, once per digest: a second pull of the same digest reuses the root.
async fn pull(cache: &Path, reference: &str) -> Result<Pulled, String> {
    let pulled_digest = crane(&["digest", reference]).await?;
    let by_digest = format!("{}@{pulled_digest}", repository_of(reference));
    // The same manifest as a pull by tag would take, even if the tag moves.
    let digest = crane(&["digest", "--platform", platform(), &by_digest]).await?;
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!("unexpected digest {digest:?}"));
    };
    let dir = cache.join(hex);
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        let _one = PULLS.lock().await;
        if !config_path.exists() {
            let staging = cache.join(format!(
                ".{hex}.{}.{}",
                std::process::id(),
                STAGING.fetch_add(1, Ordering::Relaxed)
            ));
            let by_digest = format!("{}@{digest}", repository_of(reference));
            let unpacked = match unpack(&staging, &by_digest).await {
                Ok(()) => std::fs::rename(&staging, &dir)
                    .map_err(|e| format!("failed to move the image into {}: {e}", dir.display())),
                Err(e) => Err(e),
            };
            if let Err(e) = unpacked {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
    }
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("failed to read {}: {e}", config_path.display()))?;
    let config: ConfigFile =
        serde_json::from_str(&text).map_err(|e| format!("failed to read the image config: {e}"))?;
    Ok(Pulled {
        digest: pulled_digest,
        root: dir.join("rootfs"),
        defaults: config.config,
    })
}

/// Unpacks the image `by_digest` into `staging`: its layers as `rootfs`,
/// its config as `config.json`.
async fn unpack(staging: &Path, by_digest: &str) -> Result<(), String> {
    let config = crane(&["config", by_digest]).await?;
    let root = staging.join("rootfs");
    std::fs::create_dir_all(&root).map_err(|e| format!("failed to create {root:?}: {e}"))?;
    let unpacked = tokio::process::Command::new("bash")
        .args([
            "-o",
            "pipefail",
            "-c",
            r#""$1" export "$2" - | tar -x -C "$3""#,
            "unpack",
        ])
        .arg(registry::crane())
        .arg(by_digest)
        .arg(&root)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("failed to unpack: {e}"))?;
    if !unpacked.status.success() {
        return Err(format!(
            "failed to unpack: {}",
            String::from_utf8_lossy(&unpacked.stderr).trim()
        ));
    }
    // What a container runtime adds to every root: mount points for the
    // kernel's file systems.
    for dir in ["dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(dir))
            .map_err(|e| format!("failed to create /{dir} in the root: {e}"))?;
    }
    std::fs::write(staging.join("config.json"), config)
        .map_err(|e| format!("failed to keep the image config: {e}"))
}

/// `reference` without its tag or digest.
fn repository_of(reference: &str) -> &str {
    let (host, path) = split_registry(reference);
    let repo = repository(path);
    match host {
        Some(host) => &reference[..host.len() + 1 + repo.len()],
        None => repo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:25000";

    #[test]
    fn ghcr_and_the_local_registry_are_pulled_from_the_local_registry() {
        assert_eq!(
            source("ghcr.io/ebisu-dev/ebisu-operator:0.1.0", LOCAL).unwrap(),
            Source::Registry(format!("{LOCAL}/ebisu-dev/ebisu-operator:0.1.0"))
        );
        assert_eq!(
            source(&format!("{LOCAL}/ebisu-dev/ebisu-sidecar@sha256:ab"), LOCAL).unwrap(),
            Source::Registry(format!("{LOCAL}/ebisu-dev/ebisu-sidecar@sha256:ab"))
        );
    }

    #[test]
    fn database_images_come_from_the_table() {
        for image in [
            "mariadb:10.11",
            "docker.io/library/mariadb:11",
            "library/mariadb",
        ] {
            assert_eq!(
                source(image, LOCAL).unwrap(),
                Source::Host("mariadbd"),
                "{image}"
            );
        }
        for image in ["mysql:8.4", "docker.io/library/mysql:9.7"] {
            assert_eq!(source(image, LOCAL).unwrap(), Source::MysqlRoot, "{image}");
        }
    }

    #[test]
    fn other_images_and_registries_fail_like_a_pull() {
        for image in [
            "postgres:17",
            "quay.io/ebisu-dev/ebisu-operator:0.1.0",
            "ebisu-operator:0.1.0",
            "example.com:5000/mariadb:11",
        ] {
            let err = source(image, LOCAL).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("failed to pull image \"{image}\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn argv_follows_kubernetes_command_and_args() {
        let image = Defaults {
            entrypoint: Some(vec!["/ebisu-sidecar".into()]),
            cmd: Some(vec!["serve".into()]),
        };
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(argv(&image, &[], &[]), s(&["/ebisu-sidecar", "serve"]));
        assert_eq!(
            argv(&image, &[], &s(&["install", "/x"])),
            s(&["/ebisu-sidecar", "install", "/x"])
        );
        assert_eq!(argv(&image, &s(&["/bin/x"]), &[]), s(&["/bin/x"]));
        assert_eq!(
            argv(&image, &s(&["/bin/x"]), &s(&["-v"])),
            s(&["/bin/x", "-v"])
        );
        assert!(argv(&Defaults::default(), &[], &[]).is_empty());
    }

    #[test]
    fn references_lose_tag_and_digest_but_keep_the_registry_port() {
        assert_eq!(
            repository_of("127.0.0.1:25000/ebisu-dev/ebisu-operator:0.1.0"),
            "127.0.0.1:25000/ebisu-dev/ebisu-operator"
        );
        assert_eq!(
            repository_of("127.0.0.1:25000/a/b@sha256:00"),
            "127.0.0.1:25000/a/b"
        );
        assert_eq!(repository_of("mysql:8.4"), "mysql");
    }
}
