//! Names that come from device data (measurements, tag and field names) become table and column
//! names in SQL databases. This is the one rule for which of them are accepted.
//!
//! A valid identifier is 1 to [`MAX_IDENT_LEN`] ASCII characters: a letter or `_` first, then
//! letters, digits and `_`. Sinks still quote every identifier they write; the rule keeps names
//! portable across every database Roost writes to and readable in Grafana queries.

use thiserror::Error;

/// The longest identifier accepted (PostgreSQL truncates at 63 bytes, MySQL at 64).
pub const MAX_IDENT_LEN: usize = 63;

/// Why a name is not a valid identifier.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("name is empty")]
    Empty,
    #[error("name {0:?} is longer than {MAX_IDENT_LEN} characters")]
    TooLong(String),
    #[error("name {0:?} must start with a letter or '_' and hold only ASCII letters, digits and '_'")]
    BadChars(String),
}

/// Checks `name` against the identifier rule.
pub fn validate(name: &str) -> Result<(), IdentError> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(IdentError::Empty);
    };
    if name.len() > MAX_IDENT_LEN {
        return Err(IdentError::TooLong(shorten(name)));
    }
    let ok_first = first.is_ascii_alphabetic() || first == '_';
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(IdentError::BadChars(shorten(name)));
    }
    Ok(())
}

/// A name cut to a length fit for an error message.
fn shorten(name: &str) -> String {
    const KEEP: usize = 80;
    if name.chars().count() <= KEEP {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(KEEP).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for n in ["t", "temp_c", "_x", "Humidity2", &"a".repeat(MAX_IDENT_LEN)] {
            assert_eq!(validate(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(validate(""), Err(IdentError::Empty));
        assert!(matches!(validate(&"a".repeat(200)), Err(IdentError::TooLong(_))));
        for n in ["a\"; DROP TABLE x; --", "1abc", "a b", "é", "a-b", "a.b", "a/b", "a\0b"] {
            assert!(matches!(validate(n), Err(IdentError::BadChars(_))), "{n:?}");
        }
    }
}
