//! The image table: what stands in for a container image. There is no
//! image store on these machines, so an image is either the machine's own
//! programs or a root file system built from Debian's packages (by
//! `tests/build-rootfs.sh`, cached outside the clone), which the container
//! runs inside, as a container runtime would:
//!
//! | image                                         | runs                                           |
//! |-----------------------------------------------|------------------------------------------------|
//! | `mariadb:*`, `docker.io/library/mariadb:*`    | the machine's programs as they are (MariaDB 10.11 from Debian 12: `mariadbd`, `mariadb-backup`, `mbstream`, `sh`, ...); default command `mariadbd` |
//! | `mysql:*`, `docker.io/library/mysql:*`        | inside the `sid` root with MySQL 9.7 (`mysqld`, `mysql`, the clone and semi-sync plugins), whatever the tag; default command `mysqld` |
//! | any image whose name contains `ebisu-sidecar` | `/ebisu-sidecar` is the workspace's built `ebisu-sidecar`; other paths as on the host |
//! | any image whose name contains `ebisu-operator`| `/ebisu-operator` (and the default command) is the built `ebisu-operator` |
//! | anything else                                 | fails like a pull: `ErrImagePull`              |
//!
//! Built binaries come from `$EBISU_BIN_DIR`, default `<workspace>/target/debug`;
//! the MySQL root from `$EBISU_CACHE/rootfs/mysql-sid-2` (default `$HOME/.cache/ebisu`).

use std::path::PathBuf;

/// Why an image cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not in the table: reported as `ErrImagePull`.
    #[error(
        "failed to pull image \"{0}\": not available in the ebisu test cluster (images run host programs: mariadb:*, *ebisu-sidecar*, *ebisu-operator*)"
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
}

/// What runs for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The root file system it runs inside; the machine's own when `None`.
    pub root: Option<PathBuf>,
}

/// Where the MySQL image's root file system is.
pub fn mysql_root() -> PathBuf {
    let cache = std::env::var_os("EBISU_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/ebisu")
        },
        PathBuf::from,
    );
    cache.join("rootfs/mysql-sid-2")
}

/// Where the workspace's built binaries are.
pub fn ebisu_bin_dir() -> PathBuf {
    std::env::var_os("EBISU_BIN_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/debug")),
        PathBuf::from,
    )
}

fn repository(image: &str) -> &str {
    // Strip a digest, then a tag (a colon after the last slash).
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].find(':') {
        Some(colon) => &image[..last_slash + colon],
        None => image,
    }
}

/// What to run for a container of `image` with the pod's `command` and
/// `args` (Kubernetes semantics: command replaces the entrypoint, args the cmd).
pub fn resolve(image: &str, command: &[String], args: &[String]) -> Result<Resolved, ImageError> {
    let repo = repository(image);
    let mut root = None;
    let (entrypoint, own_binary): (Vec<String>, Option<(&str, PathBuf)>) =
        if repo == "mariadb" || repo == "docker.io/library/mariadb" || repo == "library/mariadb" {
            (vec!["mariadbd".to_owned()], None)
        } else if repo == "mysql" || repo == "docker.io/library/mysql" || repo == "library/mysql" {
            let mysql = mysql_root();
            if !mysql.join(".ebisu-complete").exists() {
                return Err(ImageError::NoRoot {
                    image: image.to_owned(),
                    root: mysql.display().to_string(),
                });
            }
            root = Some(mysql);
            (vec!["mysqld".to_owned()], None)
        } else if repo.contains("ebisu-sidecar") {
            let bin = ebisu_bin_dir().join("ebisu-sidecar");
            (
                vec![bin.display().to_string()],
                Some(("/ebisu-sidecar", bin)),
            )
        } else if repo.contains("ebisu-operator") {
            let bin = ebisu_bin_dir().join("ebisu-operator");
            (
                vec![bin.display().to_string()],
                Some(("/ebisu-operator", bin)),
            )
        } else {
            return Err(ImageError::Unknown(image.to_owned()));
        };
    let mut argv = if command.is_empty() {
        let mut argv = entrypoint;
        argv.extend(args.iter().cloned());
        argv
    } else {
        let mut argv = command.to_vec();
        argv.extend(args.iter().cloned());
        argv
    };
    if let (Some(first), Some((path, bin))) = (argv.first_mut(), own_binary)
        && first == path
    {
        *first = bin.display().to_string();
    }
    if argv.is_empty() {
        return Err(ImageError::NoCommand(image.to_owned()));
    }
    Ok(Resolved { argv, root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_images_run_host_programs_with_mariadbd_as_default() {
        let mariadb = resolve("mariadb:10.11", &[], &[]).unwrap();
        assert_eq!(
            (mariadb.argv, mariadb.root),
            (vec!["mariadbd".to_owned()], None)
        );
        let argv = resolve(
            "docker.io/library/mariadb:11",
            &["sh".into()],
            &["-c".into()],
        )
        .unwrap()
        .argv;
        assert_eq!(argv, ["sh", "-c"]);
    }

    #[test]
    fn sidecar_image_maps_its_binary_to_the_built_one() {
        let argv = resolve(
            "ghcr.io/ebisu/ebisu-sidecar:0.1",
            &["/ebisu-sidecar".into(), "install".into()],
            &[],
        )
        .unwrap()
        .argv;
        assert!(argv[0].ends_with("target/debug/ebisu-sidecar"), "{argv:?}");
        assert_eq!(argv[1], "install");
    }

    #[test]
    fn unknown_image_fails_like_a_pull() {
        let err = resolve("postgres:17", &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("failed to pull image \"postgres:17\"")
        );
    }

    #[test]
    fn mysql_images_run_mysqld_inside_their_root() {
        match resolve("mysql:8.4", &[], &[]) {
            Ok(resolved) => {
                assert_eq!(resolved.argv, ["mysqld"]);
                assert_eq!(resolved.root, Some(mysql_root()));
            }
            Err(e) => assert!(e.to_string().contains("tests/build-rootfs.sh"), "{e}"),
        }
    }
}
