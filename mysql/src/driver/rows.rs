//! Adapters from mysql_async rows to the text rows this crate's parsers take.
//! Conversion only.

use mysql_async::{Row, Value};

/// A row as (column name, text value) pairs, as
/// [`crate::ReplicaStatus::from_row`] takes it. NULL becomes `None`.
pub fn named_columns(row: &Row) -> Vec<(String, Option<String>)> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = row.as_ref(i).and_then(|v| match v {
                Value::NULL => None,
                Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::Int(n) => Some(n.to_string()),
                Value::UInt(n) => Some(n.to_string()),
                other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
            });
            (column.name_str().into_owned(), value)
        })
        .collect()
}
