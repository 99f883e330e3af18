//! The last step of starting a container, run as `testcluster run-container
//! SPEC` inside the pod's network namespace and a fresh mount and UTS
//! namespace (`ip netns exec NS unshare --uts ...`): set the hostname,
//! bind-mount the volumes at their mount paths, enter the image's root when
//! it has one, take on the container's user and groups, and exec. Mounts made here vanish with the
//! container's processes, so the host keeps no mounts to clean up.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec file could not be read.
    #[error("failed to read launch spec {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The spec file is not valid.
    #[error("failed to parse launch spec: {0}")]
    Parse(#[from] serde_json::Error),
    /// A setup command failed.
    #[error("failed to {what}: {detail}")]
    Setup {
        /// What we tried.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// The program could not be executed.
    #[error("failed to exec {program}: {source}")]
    Exec {
        /// The program.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// One bind mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything needed to start the container's process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The pod's hostname.
    pub hostname: String,
    /// Mounts, in the order they are made.
    pub mounts: Vec<BindMount>,
    /// The environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// User to run as (root when absent).
    pub uid: Option<i64>,
    /// Group to run as.
    pub gid: Option<i64>,
    /// Supplementary groups (fsGroup and supplementalGroups).
    pub groups: Vec<i64>,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Where to record mount points created on the host, so that `down` can
    /// remove them again.
    pub created_log: Option<PathBuf>,
    /// The image's root file system, when it has one: the mounts are made
    /// inside it and the program runs in it (chroot).
    #[serde(default)]
    pub root: Option<PathBuf>,
}

impl LaunchSpec {
    /// The command that runs `argv` with this spec's user and environment:
    /// `setpriv` when a user or group is set (exec probes and hooks, which
    /// `nsenter` runs in the container).
    pub fn command(&self, argv: &[String]) -> Command {
        let mut cmd = if self.uid.is_some() || self.gid.is_some() || !self.groups.is_empty() {
            let mut cmd = Command::new("setpriv");
            if let Some(uid) = self.uid {
                cmd.arg(format!("--reuid={uid}"));
            }
            let gid = self.gid.or(self.uid);
            if let Some(gid) = gid {
                cmd.arg(format!("--regid={gid}"));
            }
            if self.groups.is_empty() {
                cmd.arg("--clear-groups");
            } else {
                let groups: Vec<String> = self.groups.iter().map(i64::to_string).collect();
                cmd.arg(format!("--groups={}", groups.join(",")));
            }
            cmd.arg("--");
            cmd.args(argv);
            cmd
        } else {
            let mut cmd = Command::new(argv.first().map_or("", String::as_str));
            cmd.args(argv.iter().skip(1));
            cmd
        };
        cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

fn setup(what: String, program: &str, args: &[&str]) -> Result<(), LaunchError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| LaunchError::Setup {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LaunchError::Setup {
            what,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn ensure_target(source: &Path, target: &Path, log: Option<&Path>) -> Result<(), LaunchError> {
    if target.exists() {
        return Ok(());
    }
    // Record every path component that is about to be created, outermost first.
    let mut created: Vec<&Path> = target.ancestors().take_while(|p| !p.exists()).collect();
    created.reverse();
    if let Some(log) = log {
        let lines: String = created
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, lines.as_bytes()));
        if let Err(e) = appended {
            eprintln!("testcluster run-container: failed to record mount point: {e}");
        }
    }
    // Mount points must exist; they are created on the host's file system
    // (empty directories or files), as a container runtime would in the image.
    let fail = |e: std::io::Error| LaunchError::Setup {
        what: format!("create mount point {}", target.display()),
        detail: e.to_string(),
    };
    if source.is_dir() {
        std::fs::create_dir_all(target).map_err(fail)
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::File::create(target).map(drop).map_err(fail)
    }
}

/// Reads the spec, mounts, and replaces this process with the container's.
/// Returns only on failure.
pub fn exec(spec_path: &Path) -> LaunchError {
    match prepare(spec_path) {
        Ok((spec, mut cmd)) => LaunchError::Exec {
            program: spec.argv.first().cloned().unwrap_or_default(),
            source: cmd.exec(),
        },
        Err(e) => e,
    }
}

fn prepare(spec_path: &Path) -> Result<(LaunchSpec, Command), LaunchError> {
    let text = std::fs::read_to_string(spec_path).map_err(|source| LaunchError::Read {
        path: spec_path.to_owned(),
        source,
    })?;
    let spec: LaunchSpec = serde_json::from_str(&text)?;
    setup("set the hostname".to_owned(), "hostname", &[&spec.hostname])?;
    let inside = |target: &Path| match &spec.root {
        Some(root) => in_root(root, target),
        None => target.to_owned(),
    };

    if let Some(root) = &spec.root {
        // What a container runtime gives every container of an image.
        for (what, source) in [("dev", "/dev"), ("proc", "/proc"), ("sys", "/sys")] {
            let target = root.join(what);
            setup(
                format!("mount {source} in {}", root.display()),
                "mount",
                &["--rbind", source, &target.display().to_string()],
            )?;
        }
    }
    for mount in &spec.mounts {
        let target = inside(&mount.target);
        // Mount points inside an image's root belong to the image, not the host.
        let log = if spec.root.is_some() {
            None
        } else {
            spec.created_log.as_deref()
        };
        ensure_target(&mount.source, &target, log)?;
        let (src, tgt) = (
            mount.source.display().to_string(),
            target.display().to_string(),
        );
        setup(
            format!("mount {src} at {tgt}"),
            "mount",
            &["--bind", &src, &tgt],
        )?;
        if mount.read_only {
            setup(
                format!("make {tgt} read-only"),
                "mount",
                &["-o", "remount,bind,ro", &tgt],
            )?;
        }
    }
    if let Some(root) = &spec.root {
        std::os::unix::fs::chroot(root).map_err(|e| LaunchError::Setup {
            what: format!("enter the image's root {}", root.display()),
            detail: e.to_string(),
        })?;
        std::env::set_current_dir("/").map_err(|e| LaunchError::Setup {
            what: "change to / in the image's root".to_owned(),
            detail: e.to_string(),
        })?;
    }
    // The container's user, set here as a runtime sets it: an image need
    // not have a program that drops privileges.
    become_user(&spec)?;
    let mut cmd = Command::new(spec.argv.first().map_or("", String::as_str));
    cmd.args(spec.argv.iter().skip(1))
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    Ok((spec, cmd))
}

/// Takes on the spec's groups, group and user (in that order: the user
/// may no longer change them), when it names any.
fn become_user(spec: &LaunchSpec) -> Result<(), LaunchError> {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    let id = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    let fail = |what: &str, e: nix::Error| LaunchError::Setup {
        what: what.to_owned(),
        detail: e.to_string(),
    };
    if spec.uid.is_none() && spec.gid.is_none() && spec.groups.is_empty() {
        return Ok(());
    }
    let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(id(*g))).collect();
    setgroups(&groups).map_err(|e| fail("set the supplementary groups", e))?;
    if let Some(gid) = spec.gid.or(spec.uid) {
        setgid(Gid::from_raw(id(gid))).map_err(|e| fail("set the group", e))?;
    }
    if let Some(uid) = spec.uid {
        setuid(Uid::from_raw(id(uid))).map_err(|e| fail("set the user", e))?;
    }
    Ok(())
}

/// `target` inside the image's `root`, its symlinks resolved inside the
/// root as a container runtime resolves them: an absolute link in the
/// image (Debian's `/var/run -> /run`) must not lead onto the host.
fn in_root(root: &Path, target: &Path) -> PathBuf {
    use std::ffi::OsString;
    use std::path::Component;
    fn parts(path: &Path) -> Vec<OsString> {
        path.components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_owned()),
                Component::ParentDir => Some(OsString::from("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect()
    }
    let mut pending = parts(target);
    pending.reverse();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        match std::fs::read_link(&candidate) {
            // As the kernel does, give up following after 40 links.
            Ok(link) if links < 40 => {
                links += 1;
                if link.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(parts(&link).into_iter().rev());
            }
            _ => resolved.push(part),
        }
    }
    root.join(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_the_image_resolve_inside_the_image() {
        let root = std::env::temp_dir().join(format!("ebisu-in-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("run")).expect("run");
        std::fs::create_dir_all(root.join("usr/lib")).expect("usr/lib");
        std::os::unix::fs::symlink("/run", root.join("var-run")).expect("absolute link");
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).expect("relative link");
        assert_eq!(
            in_root(&root, Path::new("/var-run/secrets/token")),
            root.join("run/secrets/token")
        );
        assert_eq!(in_root(&root, Path::new("/lib/x")), root.join("usr/lib/x"));
        assert_eq!(in_root(&root, Path::new("/../../etc")), root.join("etc"));
        assert_eq!(
            in_root(&root, Path::new("/run/mysqld")),
            root.join("run/mysqld")
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
