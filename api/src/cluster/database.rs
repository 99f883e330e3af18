//! `spec.database`: the application's database and its owner account, made
//! when the cluster's first server initialises.

use kube::{
    KubeSchema,
    core::{Message, Rule},
};
use serde::{Deserialize, Serialize};

/// Account names ebisu keeps for itself (and `root`): an application owner
/// with one of them would take over a service account.
pub const RESERVED_OWNERS: [&str; 5] = [
    "root",
    "ebisu_operator",
    "ebisu_repl",
    "ebisu_clone",
    "ebisu_monitor",
];

/// The owner may not be one of [`RESERVED_OWNERS`].
fn reserved_owner_rule() -> Rule {
    let quoted: Vec<String> = RESERVED_OWNERS.iter().map(|o| format!("'{o}'")).collect();
    Rule::new(format!("!(self in [{}])", quoted.join(", "))).message(Message::Message(format!(
        "spec.database.owner must not be {}: choose another name",
        RESERVED_OWNERS.join(", ")
    )))
}

/// The application's database and owner. The password is generated into
/// the credentials Secret (`app-password`); the `<name>-app` Secret holds
/// everything a client needs to connect.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The database to create (letters, digits and `_`, at most 64
    /// characters, not starting with a digit).
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]{0,63}$')")
        .message("spec.database.name must be 1 to 64 letters, digits or '_', not starting with a digit: choose such a name"))]
    pub name: String,

    /// The account that owns it, `'<owner>'@'%'`, granted every privilege on
    /// that database and nothing else (letters, digits and `_`, at most 32
    /// characters; not `root` nor one of ebisu's own accounts).
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]{0,31}$')")
            .message("spec.database.owner must be 1 to 32 letters, digits or '_', not starting with a digit: choose such a name"),
        validation = reserved_owner_rule(),
    )]
    pub owner: String,
}
