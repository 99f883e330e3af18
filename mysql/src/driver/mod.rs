//! What needs `mysql_async` (feature `driver`): converting its rows into the
//! text rows this crate's parsers take ([`rows`]), and the one reader of a
//! server's state that the operator and the sidecar share ([`read`]). The
//! caller opens the connection; nothing here connects or retries.

pub mod read;
pub mod rows;

pub use read::{
    ReadError, ReceiverProgress, SemiSyncState, ServerRead, read_flavor, read_semi_sync,
    read_server, read_version, receiver_progress, replica_status,
};
pub use rows::named_columns;
