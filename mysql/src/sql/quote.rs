//! The one place where text becomes an SQL string literal, plus the shape
//! checks for names and hosts that are spliced into statements.
//!
//! Every literal in every statement this crate builds goes through
//! [`quote_literal`]. It is written so that the result can never end the
//! literal early, whatever the session's `sql_mode`: a single quote is
//! doubled (`''`), which both backslash-escaping and `NO_BACKSLASH_ESCAPES`
//! sessions read as one quote. Backslash and NUL are escaped for the default
//! mode; under `NO_BACKSLASH_ESCAPES` they would arrive doubled (a wrong
//! password, never an injection), so connections must keep the default
//! `sql_mode` escaping and an ASCII-compatible character set such as utf8mb4
//! (multi-byte sets like GBK can swallow a backslash).

use super::SqlError;

/// Quotes `name` as a backquoted identifier (a schema or table), doubling
/// any backquote in it, so a name read from the server can be spliced into
/// a statement whatever it holds.
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Longest account name accepted; 32 is MySQL's limit (MariaDB allows more).
pub const MAX_USER_NAME_LEN: usize = 32;

/// Longest replication source host name (MySQL's SOURCE_HOST limit).
pub const MAX_HOST_LEN: usize = 255;

/// Quotes `value` as a single-quoted SQL string literal, escaping backslash,
/// single quote and NUL.
pub fn quote_literal(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            // Doubling (not `\'`) keeps the literal closed even when the
            // session runs with NO_BACKSLASH_ESCAPES.
            '\'' => quoted.push_str("''"),
            '\0' => quoted.push_str("\\0"),
            other => quoted.push(other),
        }
    }
    quoted.push('\'');
    quoted
}

/// Checks that `name` is a service account name: 1 to 32 of `[A-Za-z0-9_]`.
pub fn validate_user_name(name: &str) -> Result<(), SqlError> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_USER_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed {
        Ok(())
    } else {
        Err(SqlError::InvalidUserName {
            name: name.to_owned(),
        })
    }
}

/// Checks that `host` looks like a DNS name or an IP address (letters,
/// digits, `.`, `-`, `_`, `:`), at most 255 bytes.
pub fn validate_host(host: &str) -> Result<(), SqlError> {
    let well_formed = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if well_formed {
        Ok(())
    } else {
        Err(SqlError::InvalidHost {
            host: host.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// How mysqld reads a literal starting at `text[0] == '\''`; returns the
    /// decoded value and the byte index of the closing quote.
    fn lex_literal(text: &str, backslash_escapes: bool) -> Option<(String, usize)> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut value = String::new();
        let mut i = 1;
        while i < chars.len() {
            let (at, c) = chars[i];
            match c {
                '\\' if backslash_escapes => {
                    let (_, next) = *chars.get(i + 1)?;
                    value.push(match next {
                        '0' => '\0',
                        'n' => '\n',
                        other => other,
                    });
                    i += 2;
                }
                '\'' => {
                    if chars.get(i + 1).map(|(_, c)| *c) == Some('\'') {
                        value.push('\'');
                        i += 2;
                    } else {
                        return Some((value, at));
                    }
                }
                other => {
                    value.push(other);
                    i += 1;
                }
            }
        }
        None
    }

    #[test]
    fn an_identifier_with_a_backquote_stays_one_identifier() {
        assert_eq!(quote_identifier("orders"), "`orders`");
        assert_eq!(
            quote_identifier("a`; DROP TABLE t; --"),
            "`a``; DROP TABLE t; --`"
        );
    }

    #[test]
    fn quote_escapes_quote_and_backslash() {
        assert_eq!(quote_literal(r"it's a \ test"), r"'it''s a \\ test'");
    }

    #[test]
    fn quote_escapes_nul() {
        assert_eq!(quote_literal("a\0b"), r"'a\0b'");
    }

    #[test]
    fn quote_of_empty_string_is_two_quotes() {
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn quote_keeps_injection_attempt_inside_the_literal() {
        let quoted = quote_literal(r"x\'; DROP DATABASE app; -- ");
        let (value, end) = lex_literal(&quoted, true).expect("literal is closed");
        assert_eq!(value, r"x\'; DROP DATABASE app; -- ");
        assert_eq!(end, quoted.len() - 1);
    }

    #[test]
    fn user_name_with_quote_is_refused() {
        assert_eq!(
            validate_user_name("bob'"),
            Err(SqlError::InvalidUserName {
                name: "bob'".into()
            })
        );
    }

    #[test]
    fn user_name_length_is_limited_to_32() {
        assert!(validate_user_name(&"a".repeat(32)).is_ok());
        assert!(validate_user_name(&"a".repeat(33)).is_err());
        assert!(validate_user_name("").is_err());
    }

    #[test]
    fn user_name_allows_letters_digits_underscore() {
        assert!(validate_user_name("ebisu_Operator_1").is_ok());
        assert!(validate_user_name("ebisu-operator").is_err());
        assert!(validate_user_name("ébisu").is_err());
    }

    #[test]
    fn host_accepts_dns_names_and_ip_addresses() {
        assert!(validate_host("orders-0.orders.db.svc.cluster.local").is_ok());
        assert!(validate_host("10.0.3.7").is_ok());
        assert!(validate_host("fd00::1").is_ok());
    }

    #[test]
    fn host_with_quote_or_space_is_refused() {
        assert!(validate_host("a'b").is_err());
        assert!(validate_host("a b").is_err());
        assert!(validate_host("").is_err());
        assert!(validate_host(&"h".repeat(256)).is_err());
    }

    proptest! {
        #[test]
        fn quoted_literal_round_trips_with_backslash_escapes(value in any::<String>()) {
            let quoted = quote_literal(&value);
            let (decoded, end) = lex_literal(&quoted, true).expect("literal is closed");
            prop_assert_eq!(decoded, value);
            prop_assert_eq!(end, quoted.len() - 1);
        }

        #[test]
        fn quoted_literal_never_closes_early_without_backslash_escapes(value in any::<String>()) {
            let quoted = quote_literal(&value);
            let (_, end) = lex_literal(&quoted, false).expect("literal is closed");
            prop_assert_eq!(end, quoted.len() - 1);
        }
    }
}
