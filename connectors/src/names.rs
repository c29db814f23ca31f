//! The name rules every sink applies to a record before writing it: the measurement, tag and
//! field names must be valid identifiers ([`roost_core::ident`]), and no two of the record's
//! columns may collide once case is ignored (SQL databases compare names without case), nor
//! with the `time` and `device` columns every table starts with.

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
}
