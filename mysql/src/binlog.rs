//! Binary log bytes: the events a stretch of a binary log file holds, the
//! transactions (GTIDs) among them with their commit times, and the GTIDs a
//! file says came before it, for both flavors. What a binary log archive
//! needs to index a server's logs by GTID rather than by file name.
//!
//! Hand-written rather than `mysql_common::binlog`: that reader panics on a
//! stretch that ends inside an event and knows none of MariaDB's events;
//! only the common header and four event bodies are read here.

use crate::gtid::{GtidSet, MariaDbGtid, MariaDbGtidPos, MySqlGtidSet};

/// The four bytes every binary log file starts with.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// The common header of every (v4) event.
const HEADER_LEN: usize = 19;

const MYSQL_GTID: u8 = 33;
const MYSQL_PREVIOUS_GTIDS: u8 = 35;
const MYSQL_GTID_TAGGED: u8 = 42;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;

/// Why bytes could not be read as binary log events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinlogError {
    /// A header's length runs past the stretch (or is shorter than a header).
    #[error("failed to read the event at offset {offset}: {why}")]
    Truncated {
        /// The event's offset in its file.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// An event body too short for its type.
    #[error("failed to read the {what} at offset {offset}: its body is {len} bytes")]
    ShortBody {
        /// The event kind.
        what: &'static str,
        /// The event's offset in its file.
        offset: u64,
        /// The body's length.
        len: usize,
    },
    /// A MySQL 8.4 tagged GTID (ebisu never writes them).
    #[error(
        "failed to read the event at offset {offset}: tagged GTIDs (MySQL 8.4 gtid tags) are not supported"
    )]
    Tagged {
        /// The event's offset in its file.
        offset: u64,
    },
    /// Not a binary log file.
    #[error("failed to read a binary log: it does not start with the binlog magic bytes")]
    NotABinlog,
}

/// One event: its common header's fields and its body (post-header, data
/// and checksum, as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Offset of the event in its file.
    pub offset: u64,
    /// Seconds since the epoch, as the header says.
    pub timestamp: u32,
    /// Event type code.
    pub kind: u8,
    /// Server the event (the transaction) came from.
    pub server_id: u32,
    /// Everything after the common header.
    pub body: &'a [u8],
}

/// The events of `bytes`, a stretch of a file that starts at `offset` on
/// an event boundary (past the magic bytes when `offset` is 0). A stretch
/// ending inside an event ends with an error.
pub fn events(bytes: &[u8], offset: u64) -> impl Iterator<Item = Result<Event<'_>, BinlogError>> {
    let mut at = 0usize;
    if offset == 0 && bytes.starts_with(&MAGIC) {
        at = MAGIC.len();
    }
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= bytes.len() {
            return None;
        }
        match read_event(&bytes[at..], offset + at as u64) {
            Ok((event, len)) => {
                at += len;
                Some(Ok(event))
            }
            Err(error) => {
                failed = true;
                Some(Err(error))
            }
        }
    })
}

fn read_event(bytes: &[u8], offset: u64) -> Result<(Event<'_>, usize), BinlogError> {
    let truncated = |why: String| BinlogError::Truncated { offset, why };
    if bytes.len() < HEADER_LEN {
        return Err(truncated(format!(
            "{} bytes left, a header takes {HEADER_LEN}",
            bytes.len()
        )));
    }
    let len = u32_at(bytes, 9) as usize;
    if len < HEADER_LEN {
        return Err(truncated(format!(
            "its length {len} is shorter than a header"
        )));
    }
    if len > bytes.len() {
        return Err(truncated(format!(
            "its length {len} runs past the {} bytes left",
            bytes.len()
        )));
    }
    Ok((
        Event {
            offset,
            timestamp: u32_at(bytes, 0),
            kind: bytes[4],
            server_id: u32_at(bytes, 5),
            body: &bytes[HEADER_LEN..len],
        },
        len,
    ))
}

/// One transaction's GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gtid {
    /// MySQL: source UUID and transaction number.
    MySql {
        /// The source's UUID, as its 16 bytes.
        sid: [u8; 16],
        /// The transaction number.
        gno: u64,
    },
    /// MariaDB: domain, server and sequence number.
    MariaDb(MariaDbGtid),
}

/// A transaction found in a stretch of a binary log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// Its GTID.
    pub gtid: Gtid,
    /// When it committed on the server it was first written on, in
    /// microseconds since the epoch. MySQL records that to the
    /// microsecond (`original_commit_timestamp`); MariaDB's GTID event
    /// carries the whole second its transaction started in.
    pub committed_us: i64,
    /// The offset of its GTID event.
    pub offset: u64,
}

/// The transactions in `bytes` (see [`events`]), in order.
pub fn transactions(bytes: &[u8], offset: u64) -> Result<Vec<Transaction>, BinlogError> {
    let mut found = Vec::new();
    for event in events(bytes, offset) {
        let event = event?;
        match event.kind {
            MYSQL_GTID => found.push(mysql_gtid(&event)?),
            MYSQL_GTID_TAGGED => {
                return Err(BinlogError::Tagged {
                    offset: event.offset,
                });
            }
            MARIADB_GTID => found.push(mariadb_gtid(&event)?),
            _ => {}
        }
    }
    Ok(found)
}

/// MySQL's Gtid_log_event: flags (1), sid (16), gno (8), logical clock
/// type (1), last committed (8), sequence number (8), then the immediate
/// commit timestamp (7 bytes, microseconds; its top bit says an original
/// commit timestamp follows, else the two are the same).
fn mysql_gtid(event: &Event<'_>) -> Result<Transaction, BinlogError> {
    let body = event.body;
    let short = || BinlogError::ShortBody {
        what: "MySQL GTID event",
        offset: event.offset,
        len: body.len(),
    };
    if body.len() < 25 {
        return Err(short());
    }
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&body[1..17]);
    let gno = u64_at(body, 17);
    let committed_us = if body.len() >= 49 {
        let immediate = u56_at(body, 42);
        let original_follows = immediate & (1 << 55) != 0;
        let immediate = immediate & !(1 << 55);
        if original_follows && body.len() >= 56 {
            u56_at(body, 49)
        } else {
            immediate
        }
    } else {
        u64::from(event.timestamp) * 1_000_000
    };
    Ok(Transaction {
        gtid: Gtid::MySql { sid, gno },
        committed_us: i64::try_from(committed_us).unwrap_or(i64::MAX),
        offset: event.offset,
    })
}

/// MariaDB's Gtid_event: sequence number (8), domain (4), flags (1); the
/// server id is the header's.
fn mariadb_gtid(event: &Event<'_>) -> Result<Transaction, BinlogError> {
    if event.body.len() < 12 {
        return Err(BinlogError::ShortBody {
            what: "MariaDB GTID event",
            offset: event.offset,
            len: event.body.len(),
        });
    }
    Ok(Transaction {
        gtid: Gtid::MariaDb(MariaDbGtid {
            domain_id: u32_at(event.body, 8),
            server_id: event.server_id,
            seq_no: u64_at(event.body, 0),
        }),
        committed_us: i64::from(event.timestamp) * 1_000_000,
        offset: event.offset,
    })
}

/// The GTIDs a file says its server had written before it (MySQL's
/// Previous_gtids event, MariaDB's Gtid_list event), read from the file's
/// first events; `None` when `head` has neither, an error when `head` ends
/// inside one of them.
pub fn preceding(head: &[u8]) -> Result<Option<GtidSet>, BinlogError> {
    if !head.starts_with(&MAGIC) {
        return Err(BinlogError::NotABinlog);
    }
    for event in events(head, 0).take(4) {
        let event = event?;
        match event.kind {
            MYSQL_PREVIOUS_GTIDS => return previous_gtids(&event).map(Some),
            MARIADB_GTID_LIST => return gtid_list(&event).map(Some),
            _ => {}
        }
    }
    Ok(None)
}

/// MySQL's Previous_gtids_log_event: the number of sources (8), then per
/// source its sid (16), the number of intervals (8) and each interval's
/// start and end (8 each, end exclusive).
fn previous_gtids(event: &Event<'_>) -> Result<GtidSet, BinlogError> {
    let body = event.body;
    let short = || BinlogError::ShortBody {
        what: "MySQL Previous_gtids event",
        offset: event.offset,
        len: body.len(),
    };
    if body.len() < 8 {
        return Err(short());
    }
    let sources = u64_at(body, 0);
    // The top byte marks the tagged format (MySQL 8.4 gtid tags).
    if sources >> 56 != 0 {
        return Err(BinlogError::Tagged {
            offset: event.offset,
        });
    }
    let mut at = 8usize;
    let mut runs = Vec::new();
    for _ in 0..sources {
        if body.len() < at + 24 {
            return Err(short());
        }
        let mut sid = [0u8; 16];
        sid.copy_from_slice(&body[at..at + 16]);
        let intervals = u64_at(body, at + 16);
        at += 24;
        for _ in 0..intervals {
            if body.len() < at + 16 {
                return Err(short());
            }
            // Stored with an exclusive end.
            runs.push((
                sid,
                u64_at(body, at),
                u64_at(body, at + 8).saturating_sub(1),
            ));
            at += 16;
        }
    }
    Ok(GtidSet::MySql(MySqlGtidSet::from_runs(runs)))
}

/// MariaDB's Gtid_list_log_event: the count (4, its top 4 bits flags), then
/// per GTID its domain (4), server (4) and sequence number (8).
fn gtid_list(event: &Event<'_>) -> Result<GtidSet, BinlogError> {
    let body = event.body;
    let short = || BinlogError::ShortBody {
        what: "MariaDB Gtid_list event",
        offset: event.offset,
        len: body.len(),
    };
    if body.len() < 4 {
        return Err(short());
    }
    let count = (u32_at(body, 0) & 0x0fff_ffff) as usize;
    if body.len() < 4 + count * 16 {
        return Err(short());
    }
    let gtids = (0..count).map(|i| {
        let at = 4 + i * 16;
        MariaDbGtid {
            domain_id: u32_at(body, at),
            server_id: u32_at(body, at + 4),
            seq_no: u64_at(body, at + 8),
        }
    });
    Ok(GtidSet::MariaDb(MariaDbGtidPos::from_gtids(gtids)))
}

/// The GTID set of `transactions` (MySQL: every one; MariaDB: the last of
/// each domain, which is what a MariaDB position means).
pub fn gtid_set(transactions: &[Transaction], mariadb: bool) -> GtidSet {
    if mariadb {
        return GtidSet::MariaDb(MariaDbGtidPos::from_gtids(transactions.iter().filter_map(
            |t| match t.gtid {
                Gtid::MariaDb(g) => Some(g),
                Gtid::MySql { .. } => None,
            },
        )));
    }
    GtidSet::MySql(MySqlGtidSet::from_runs(transactions.iter().filter_map(
        |t| match t.gtid {
            Gtid::MySql { sid, gno } => Some((sid, gno, gno)),
            Gtid::MariaDb(_) => None,
        },
    )))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u56_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..7].copy_from_slice(&bytes[at..at + 7]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u8, timestamp: u32, server_id: u32, body: &[u8]) -> Vec<u8> {
        let len = (HEADER_LEN + body.len()) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&timestamp.to_le_bytes());
        e.push(kind);
        e.extend_from_slice(&server_id.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(body);
        e
    }

    const SID: [u8; 16] = [
        0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95,
        0x62,
    ];

    fn mysql_gtid_body(gno: u64, immediate_us: u64, original_us: Option<u64>) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&SID);
        b.extend_from_slice(&gno.to_le_bytes());
        b.push(2);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let flagged = immediate_us | if original_us.is_some() { 1 << 55 } else { 0 };
        b.extend_from_slice(&flagged.to_le_bytes()[..7]);
        if let Some(original) = original_us {
            b.extend_from_slice(&original.to_le_bytes()[..7]);
        }
        b.extend_from_slice(&[0; 4]); // checksum
        b
    }

    fn mariadb_gtid_body(seq_no: u64, domain: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&seq_no.to_le_bytes());
        b.extend_from_slice(&domain.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&[0; 4]);
        b
    }

    #[test]
    fn mysql_transactions_carry_their_original_commit_time() {
        let mut file = MAGIC.to_vec();
        file.extend(event(15, 100, 1, &[0; 90])); // format description
        file.extend(event(
            33,
            100,
            1,
            &mysql_gtid_body(7, 2_000_000, Some(1_500_000)),
        ));
        file.extend(event(2, 100, 1, b"BEGIN"));
        file.extend(event(16, 100, 1, &[0; 12])); // xid
        file.extend(event(33, 101, 1, &mysql_gtid_body(8, 3_000_000, None)));
        let found = transactions(&file, 0).expect("reads");
        assert_eq!(
            found
                .iter()
                .map(|t| (t.gtid, t.committed_us))
                .collect::<Vec<_>>(),
            [
                (Gtid::MySql { sid: SID, gno: 7 }, 1_500_000),
                (Gtid::MySql { sid: SID, gno: 8 }, 3_000_000)
            ]
        );
        assert_eq!(
            gtid_set(&found, false).to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:7-8"
        );
        // A stretch from an event boundary mid-file reads the same.
        let second = found[1].offset;
        let tail = &file[usize::try_from(second).expect("offset")..];
        assert_eq!(
            transactions(tail, second).expect("reads")[0].gtid,
            found[1].gtid
        );
    }

    #[test]
    fn mariadb_transactions_take_the_server_from_the_header() {
        let mut file = MAGIC.to_vec();
        file.extend(event(15, 100, 5, &[0; 90]));
        file.extend(event(162, 1_700_000_000, 101, &mariadb_gtid_body(42, 0)));
        file.extend(event(162, 1_700_000_001, 102, &mariadb_gtid_body(43, 0)));
        file.extend(event(162, 1_700_000_001, 102, &mariadb_gtid_body(9, 1)));
        let found = transactions(&file, 0).expect("reads");
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].committed_us, 1_700_000_000_000_000);
        assert_eq!(gtid_set(&found, true).to_string(), "0-102-43,1-102-9");
    }

    #[test]
    fn a_stretch_ending_inside_an_event_is_an_error_after_the_whole_ones() {
        let mut file = MAGIC.to_vec();
        file.extend(event(162, 1, 1, &mariadb_gtid_body(1, 0)));
        let whole = file.len();
        file.extend(event(162, 2, 1, &mariadb_gtid_body(2, 0)));
        let cut = &file[..file.len() - 3];
        let read: Vec<_> = events(cut, 0).collect();
        assert_eq!(read.len(), 2);
        assert!(read[0].is_ok());
        assert!(
            matches!(&read[1], Err(BinlogError::Truncated { offset, .. }) if *offset == whole as u64),
            "{read:?}"
        );
        assert!(transactions(cut, 0).is_err());
        assert!(transactions(&[0u8; 5], 4).is_err(), "shorter than a header");
    }

    #[test]
    fn the_gtids_before_a_file_are_read_from_its_head() {
        let mut mysql = MAGIC.to_vec();
        mysql.extend(event(15, 1, 1, &[0; 90]));
        let mut previous = 1u64.to_le_bytes().to_vec();
        previous.extend_from_slice(&SID);
        previous.extend_from_slice(&2u64.to_le_bytes());
        for (start, end) in [(1u64, 6u64), (8, 9)] {
            previous.extend_from_slice(&start.to_le_bytes());
            previous.extend_from_slice(&end.to_le_bytes());
        }
        previous.extend_from_slice(&[0; 4]);
        mysql.extend(event(35, 1, 1, &previous));
        assert_eq!(
            preceding(&mysql).expect("reads").map(|s| s.to_string()),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:8".to_owned())
        );

        let mut mariadb = MAGIC.to_vec();
        mariadb.extend(event(15, 1, 1, &[0; 90]));
        let mut list = 2u32.to_le_bytes().to_vec();
        for (domain, server, seq) in [(0u32, 101u32, 41u64), (1, 102, 7)] {
            list.extend_from_slice(&domain.to_le_bytes());
            list.extend_from_slice(&server.to_le_bytes());
            list.extend_from_slice(&seq.to_le_bytes());
        }
        mariadb.extend(event(163, 1, 1, &list));
        assert_eq!(
            preceding(&mariadb).expect("reads").map(|s| s.to_string()),
            Some("0-101-41,1-102-7".to_owned())
        );
        assert_eq!(preceding(b"not a binlog"), Err(BinlogError::NotABinlog));
    }

    #[test]
    fn tagged_gtids_are_refused_by_name() {
        let mut file = MAGIC.to_vec();
        file.extend(event(42, 1, 1, &[0; 60]));
        assert!(matches!(
            transactions(&file, 0),
            Err(BinlogError::Tagged { offset: 4 })
        ));
    }
}
