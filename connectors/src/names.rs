//! The name rules every sink applies to a record before writing it: the measurement, tag and
//! field names must be valid identifiers ([`roost_core::ident`]), and no two of the record's
//! columns may collide once case is ignored (SQL databases compare names without case), nor
//! with the `time` and `device` columns every table starts with. Also the names Roost derives
//! itself (a table's index), made so they can never be a table's name nor pass a length limit.

use std::collections::HashMap;

use roost_core::{ident, Record};

/// The columns every SQL table starts with.
pub const TIME: &str = "time";
pub const DEVICE: &str = "device";

/// Checks the record's names; the error says which name and why.
pub fn check_record(r: &Record) -> Result<(), String> {
    ident::validate(&r.measurement).map_err(|e| format!("measurement: {e}"))?;
    let mut seen: HashMap<String, &str> = HashMap::new();
    seen.insert(TIME.into(), TIME);
    seen.insert(DEVICE.into(), DEVICE);
    for name in r.tags.keys().chain(r.fields.keys()) {
        ident::validate(name).map_err(|e| format!("column: {e}"))?;
        if let Some(other) = seen.insert(name.to_ascii_lowercase(), name) {
            return Err(format!("column {name:?} collides with {other:?} (names are case-insensitive)"));
        }
    }
    Ok(())
}

/// The name of the `(device, time)` index of `table`, at most `limit` bytes: the table's name
/// (cut to fit), `-dt-`, and a hash of the whole table name. A `-` is not allowed in measurement
/// names or table prefixes, so the index can never share a name with a table (SQLite and
/// PostgreSQL keep tables and indexes in one namespace), and the hash keeps the indexes of two
/// long names that share a beginning apart. Stable across releases: FNV-1a of the lower-cased
/// name.
pub fn index_name(table: &str, limit: usize) -> String {
    let hash = table
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    let tail = format!("-dt-{:012x}", hash & 0xffff_ffff_ffff);
    // Table names are ASCII (validated), so any byte offset is a character boundary.
    let keep = table.len().min(limit.saturating_sub(tail.len()));
    format!("{}{tail}", &table[..keep])
}

#[cfg(test)]
mod tests {
    use roost_core::FieldValue;

    use super::*;

    #[test]
    fn collisions_and_bad_names_are_refused() {
        let mut r = Record::new("env", "d", 0);
        r.fields.insert("t".into(), FieldValue::Int(1));
        assert_eq!(check_record(&r), Ok(()));
        r.tags.insert("T".into(), "x".into());
        assert!(check_record(&r).unwrap_err().contains("collides"));
        let mut r = Record::new("env", "d", 0);
        r.fields.insert("Device".into(), FieldValue::Int(1));
        assert!(check_record(&r).unwrap_err().contains("collides with \"device\""));
        let r = Record::new("a b", "d", 0);
        assert!(check_record(&r).unwrap_err().starts_with("measurement"));
    }

    #[test]
    fn index_names_fit_and_never_look_like_tables() {
        assert_eq!(index_name("env", 63).len(), 3 + 16);
        assert!(index_name("env", 63).starts_with("env-dt-"));
        assert!(ident::validate(&index_name("env", 63)).is_err());
        let long = "m".repeat(63);
        let (a, b) = (index_name(&format!("{long}a"), 63), index_name(&format!("{long}b"), 63));
        assert_eq!((a.len(), b.len()), (63, 63));
        assert_ne!(a, b);
        assert_eq!(index_name("Env", 64)[3..], index_name("env", 64)[3..]);
    }
}
