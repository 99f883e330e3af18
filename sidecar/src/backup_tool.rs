//! The physical backup tools each flavor streams clones with, as command
//! lines: MariaDB's `mariadb-backup`/`mbstream`, MySQL's (Percona)
//! `xtrabackup`/`xbstream`. MySQL's lines are unit-tested only: MySQL cannot
//! be installed on the build machines.

use std::path::Path;

use ebisu_api::Flavor;

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The executable, looked up on PATH.
    pub program: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
}

impl CommandLine {
    /// A tokio command for this line.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(&self.args);
        cmd
    }
}

/// Streams a backup of the running server to stdout. `defaults_file` holds the
/// server's settings and the clone user's credentials (so no password is on a
/// command line); `scratch` is an empty directory for the tool's own files.
pub fn backup(flavor: Flavor, defaults_file: &Path, scratch: &Path) -> CommandLine {
    let program = if flavor == Flavor::Mariadb {
        "mariadb-backup"
    } else {
        "xtrabackup"
    };
    CommandLine {
        program,
        args: vec![
            format!("--defaults-file={}", defaults_file.display()),
            "--backup".to_owned(),
            "--stream=xbstream".to_owned(),
            format!("--target-dir={}", scratch.display()),
            // Record the donor's replication position too, for diagnosis.
            "--slave-info".to_owned(),
        ],
    }
}

/// Unpacks a stream read from stdin into `dir`.
pub fn extract(flavor: Flavor, dir: &Path) -> CommandLine {
    let program = if flavor == Flavor::Mariadb {
        "mbstream"
    } else {
        "xbstream"
    };
    CommandLine {
        program,
        args: vec!["-x".to_owned(), "-C".to_owned(), dir.display().to_string()],
    }
}

/// Makes an unpacked copy consistent (applies the redo log) so a server can start on it.
pub fn prepare(flavor: Flavor, dir: &Path) -> CommandLine {
    let program = if flavor == Flavor::Mariadb {
        "mariadb-backup"
    } else {
        "xtrabackup"
    };
    CommandLine {
        program,
        args: vec![
            "--prepare".to_owned(),
            format!("--target-dir={}", dir.display()),
        ],
    }
}

/// Why a finished tool failed: its exit status and the last lines it wrote
/// to stderr, in order.
pub fn failure(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!("{}: {}", output.status, tail.join(" | "))
}

/// Contents of the backup tool's defaults file: the server's my.cnf (so the
/// tool sees the same InnoDB settings), then the account it connects as.
pub fn defaults_file(server_cnf: &str, user: &str, password: &str, socket: &Path) -> String {
    let mut out = String::with_capacity(server_cnf.len() + 128);
    out.push_str(server_cnf);
    if !server_cnf.ends_with('\n') {
        out.push('\n');
    }
    // Option files take the value up to the end of the line; quoting keeps
    // leading/trailing characters intact.
    for group in ["client", "mariadb-backup", "xtrabackup"] {
        out.push_str(&format!(
            "[{group}]\nuser = {user}\npassword = \"{}\"\nsocket = {}\n",
            password.replace('\\', "\\\\").replace('"', "\\\""),
            socket.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_streams_with_mariadb_backup_and_mbstream() {
        let b = backup(
            Flavor::Mariadb,
            Path::new("/tmp/d.cnf"),
            Path::new("/tmp/scratch"),
        );
        assert_eq!(b.program, "mariadb-backup");
        assert_eq!(
            b.args[0], "--defaults-file=/tmp/d.cnf",
            "defaults file must come first"
        );
        assert!(b.args.contains(&"--stream=xbstream".to_owned()));
        assert_eq!(
            extract(Flavor::Mariadb, Path::new("/data")).args,
            vec!["-x", "-C", "/data"]
        );
        assert_eq!(
            extract(Flavor::Mariadb, Path::new("/data")).program,
            "mbstream"
        );
        assert_eq!(
            prepare(Flavor::Mariadb, Path::new("/data")).args,
            vec!["--prepare", "--target-dir=/data"]
        );
    }

    #[test]
    fn mysql_streams_with_xtrabackup_and_xbstream() {
        assert_eq!(
            backup(Flavor::Mysql, Path::new("/c"), Path::new("/s")).program,
            "xtrabackup"
        );
        assert_eq!(extract(Flavor::Mysql, Path::new("/d")).program, "xbstream");
        assert_eq!(
            prepare(Flavor::Mysql, Path::new("/d")).program,
            "xtrabackup"
        );
    }

    #[test]
    fn failure_keeps_the_last_lines_in_order() {
        use std::os::unix::process::ExitStatusExt;
        let output = std::process::Output {
            status: std::process::ExitStatus::from_raw(256),
            stdout: Vec::new(),
            stderr: b"1\n2\n\n3\n4\n5\n6\n".to_vec(),
        };
        assert_eq!(failure(&output), "exit status: 1: 2 | 3 | 4 | 5 | 6");
    }

    #[test]
    fn password_stays_out_of_the_command_line_and_is_quoted_in_the_file() {
        let b = backup(Flavor::Mariadb, Path::new("/c"), Path::new("/s"));
        assert!(b.args.iter().all(|a| !a.contains("password")));
        let file = defaults_file(
            "[mysqld]\nport = 3306",
            "ebisu_clone",
            "p\"w\\x",
            Path::new("/run/mysqld/mysqld.sock"),
        );
        assert!(file.starts_with("[mysqld]\nport = 3306\n"));
        assert!(file.contains("[mariadb-backup]\nuser = ebisu_clone\npassword = \"p\\\"w\\\\x\"\nsocket = /run/mysqld/mysqld.sock\n"));
    }
}
