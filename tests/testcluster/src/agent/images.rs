//! The image table: which host executables stand in for a container image.
//! There is no image store on these machines, so an image is a promise about
//! which programs exist at which paths:
//!
//! | image                                         | runs                                           |
//! |-----------------------------------------------|------------------------------------------------|
//! | `mariadb:*`, `docker.io/library/mariadb:*`    | the machine's programs as they are (`mariadbd`, `mariadb-install-db`, `mariadb-backup`, `mbstream`, `sh`, ...); default command `mariadbd` |
//! | any image whose name contains `ebisu-sidecar` | `/ebisu-sidecar` is the workspace's built `ebisu-sidecar`; other paths as on the host |
//! | any image whose name contains `ebisu-operator`| `/ebisu-operator` (and the default command) is the built `ebisu-operator` |
//! | anything else (e.g. `mysql:8.4`)              | fails like a pull: `ErrImagePull`              |
//!
//! Built binaries come from `$EBISU_BIN_DIR`, default `<workspace>/target/debug`.

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

/// The argv to run for a container of `image` with the pod's `command` and
/// `args` (Kubernetes semantics: command replaces the entrypoint, args the cmd).
pub fn resolve(
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, ImageError> {
    let repo = repository(image);
    let (entrypoint, own_binary): (Vec<String>, Option<(&str, PathBuf)>) =
        if repo == "mariadb" || repo == "docker.io/library/mariadb" || repo == "library/mariadb" {
            (vec!["mariadbd".to_owned()], None)
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
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_images_run_host_programs_with_mariadbd_as_default() {
        assert_eq!(resolve("mariadb:10.11", &[], &[]).unwrap(), ["mariadbd"]);
        let argv = resolve(
            "docker.io/library/mariadb:11",
            &["sh".into()],
            &["-c".into()],
        )
        .unwrap();
        assert_eq!(argv, ["sh", "-c"]);
    }

    #[test]
    fn sidecar_image_maps_its_binary_to_the_built_one() {
        let argv = resolve(
            "ghcr.io/ebisu/ebisu-sidecar:0.1",
            &["/ebisu-sidecar".into(), "install".into()],
            &[],
        )
        .unwrap();
        assert!(argv[0].ends_with("target/debug/ebisu-sidecar"), "{argv:?}");
        assert_eq!(argv[1], "install");
    }

    #[test]
    fn unknown_image_fails_like_a_pull() {
        let err = resolve("mysql:8.4", &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("failed to pull image \"mysql:8.4\"")
        );
    }
}
