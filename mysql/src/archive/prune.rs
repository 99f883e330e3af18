//! Archive retention: which archived files no kept backup needs
//! ([`prunable`], pure), so the archive shrinks with the backups.

use std::collections::BTreeMap;

use super::replay::Listed;
use crate::{Flavor, GtidSet};

/// The segments of the archive's oldest files that no kept backup needs.
/// Files are taken in the order they were begun; each goes whole (its
/// head and every segment) when every set in `kept` (the kept backups'
/// GTID sets) holds all of its transactions, unless it is the newest
/// archived file of a server in `archiving` (an archiver that may still
/// append to it, believing its head archived; another server's archiver
/// reads the manifests again when it starts, and uploads a head that
/// went). The first file that must stay keeps every later one, so the
/// archive still begins with a file whose preceding GTIDs cover all that
/// went, and nobody reading it sees a hole. With no kept backup nothing
/// goes: the archive may be the only copy.
pub fn prunable<'a>(
    flavor: Flavor,
    archive: &'a [Listed],
    kept: &[GtidSet],
    archiving: &[u32],
) -> Vec<&'a Listed> {
    if kept.is_empty() {
        return Vec::new();
    }
    let mut files: BTreeMap<(u32, u32, &str), Vec<&Listed>> = BTreeMap::new();
    let mut newest: BTreeMap<u32, (u32, &str)> = BTreeMap::new();
    for listed in archive {
        let m = &listed.manifest;
        files
            .entry((m.created, m.server_id, m.file.as_str()))
            .or_default()
            .push(listed);
        let latest = newest.entry(m.server_id).or_insert((m.created, &m.file));
        *latest = (*latest).max((m.created, &m.file));
    }
    let held = |listed: &Listed| match &listed.manifest.gtids {
        None => listed.manifest.transactions == 0,
        Some(gtids) => GtidSet::parse(flavor, gtids).is_ok_and(|set| {
            kept.iter()
                .all(|backup| backup.contains(&set).unwrap_or(false))
        }),
    };
    let mut gone = Vec::new();
    for ((created, server, file), segments) in files {
        let appended = archiving.contains(&server) && newest.get(&server) == Some(&(created, file));
        if appended || !segments.iter().all(|s| held(s)) {
            break;
        }
        gone.extend(segments);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Manifest, file_key, segment_keys};

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    /// A segment of `server`'s file begun at `created`, holding
    /// `UUID:first-last` (none when `first > last`).
    fn mysql(server: u32, created: u32, start: u64, first: u64, last: u64) -> Listed {
        let file = format!("binlog.{created:06}");
        let (_, key) = segment_keys("p", &file_key(server, created, &file), start);
        Listed {
            key,
            manifest: Manifest {
                held: None,
                held_at_us: None,
                server_id: server,
                file,
                created,
                start,
                end: start + 100,
                preceding: None,
                gtids: (first <= last).then(|| format!("{UUID}:{first}-{last}")),
                firsts: None,
                transactions: (last + 1).saturating_sub(first),
                first_us: None,
                last_us: None,
                sha256: String::new(),
            },
        }
    }

    fn set(s: &str) -> GtidSet {
        GtidSet::parse(Flavor::MySql84, &format!("{UUID}:{s}")).unwrap()
    }

    fn keys(gone: &[&Listed]) -> Vec<(u32, u64)> {
        gone.iter()
            .map(|l| (l.manifest.created, l.manifest.start))
            .collect()
    }

    fn archive() -> Vec<Listed> {
        vec![
            // Server 1's files 10 and 20 (head alone, then transactions),
            // server 2's file 30 after a switchover, then server 1 again.
            mysql(1, 10, 0, 1, 10),
            mysql(1, 10, 100, 11, 20),
            mysql(1, 20, 0, 1, 0),
            mysql(1, 20, 100, 21, 30),
            mysql(2, 30, 0, 31, 40),
            mysql(2, 31, 0, 41, 50),
            mysql(1, 40, 0, 51, 60),
        ]
    }

    #[test]
    fn whole_files_every_kept_backup_holds_go_oldest_first() {
        let archive = archive();
        let gone = prunable(Flavor::MySql84, &archive, &[set("1-35"), set("1-45")], &[1]);
        // File 30 holds 36-40, which the first backup lacks: it and every
        // later file stay.
        assert_eq!(keys(&gone), vec![(10, 0), (10, 100), (20, 0), (20, 100)]);
        // File 31 holds 46-50: it and every later file stay.
        let gone = prunable(Flavor::MySql84, &archive, &[set("1-45")], &[1]);
        assert_eq!(keys(&gone).len(), 5);
    }

    #[test]
    fn an_archivers_newest_file_stays() {
        let archive = archive();
        // Everything is held, but server 2 archives and file 31 is its
        // newest: it stops the rest.
        let gone = prunable(Flavor::MySql84, &archive, &[set("1-100")], &[2]);
        assert_eq!(
            keys(&gone),
            vec![(10, 0), (10, 100), (20, 0), (20, 100), (30, 0)]
        );
        // Server 1 archives: server 2's newest goes, server 1's stays.
        let gone = prunable(Flavor::MySql84, &archive, &[set("1-100")], &[1]);
        assert_eq!(keys(&gone).len(), 6);
        // A server's older files are no archiver's concern.
        let gone = prunable(Flavor::MySql84, &archive, &[set("1-100")], &[1, 2]);
        assert_eq!(keys(&gone).len(), 5);
    }

    #[test]
    fn nothing_goes_without_a_kept_backup_or_past_a_file_it_lacks() {
        let archive = archive();
        assert!(prunable(Flavor::MySql84, &archive, &[], &[]).is_empty());
        assert!(prunable(Flavor::MySql84, &archive, &[set("1-15")], &[]).is_empty());
        // A hole in a backup's set keeps the file holding it.
        assert!(prunable(Flavor::MySql84, &archive, &[set("1-4:6-100")], &[]).is_empty());
        // A manifest not understood keeps its file.
        let mut unread = archive.clone();
        unread[1].manifest.gtids = Some("not a set".to_owned());
        assert!(prunable(Flavor::MySql84, &unread, &[set("1-100")], &[]).is_empty());
    }

    #[test]
    fn mariadb_files_go_by_each_domains_position() {
        let segment = |server: u32, created: u32, gtids: &str| {
            let mut listed = mysql(server, created, 0, 1, 1);
            listed.manifest.gtids = Some(gtids.to_owned());
            listed
        };
        let archive = vec![
            segment(1, 10, "0-1-10"),
            segment(1, 20, "0-1-20,1-1-5"),
            segment(1, 30, "0-1-30,1-1-6"),
        ];
        let at = |s: &str| GtidSet::parse(Flavor::MariaDb, s).unwrap();
        let gone = prunable(Flavor::MariaDb, &archive, &[at("0-2-25,1-1-5")], &[1]);
        assert_eq!(keys(&gone), vec![(10, 0), (20, 0)]);
        let gone = prunable(Flavor::MariaDb, &archive, &[at("0-2-25")], &[1]);
        assert_eq!(keys(&gone), vec![(10, 0)]);
    }
}
