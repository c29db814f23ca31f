//! How a record becomes a MongoDB document:
//!
//! ```text
//! { _id: BinData(16 bytes), time: ISODate(ms), meta: { device: "...", tag: "...", ... }, field: value, ... }
//! ```
//!
//! - `time` is a BSON date: MongoDB keeps milliseconds, so the sub-millisecond part of the
//!   record's time is not stored;
//! - `meta` holds the device and the tags (the time-series `metaField`);
//! - fields sit at the top level with their own types: integers as 64-bit integers, floats as
//!   doubles, booleans, strings;
//! - `_id` is the first 16 bytes of a SHA-256 over the whole record (measurement, time in ns,
//!   device, tags, fields with their types): a batch written twice (a retry after a lost
//!   connection) stores each record once on a plain collection, where `_id` is unique, and
//!   identical records are stored once. `write_at` replaces it with `"{stream}:{id}"` from the
//!   record's spool position (see `sink.rs`).
//!
//! A record is refused when a field is named `_id` or `meta`, or when its document would be
//! over MongoDB's 16 MiB limit.

use mongodb::bson::{spec::BinarySubtype, Binary, Bson, DateTime, Document};
use roost_core::{FieldValue, Record};
use sha2::{Digest, Sha256};

/// The largest document MongoDB stores, less room for the BSON framing we do not count.
const MAX_DOC_BYTES: usize = 16 * 1024 * 1024 - 16 * 1024;

/// The document for `r`, or why it cannot be one.
pub fn document(r: &Record) -> Result<Document, String> {
    let mut size = 64 + r.device.len();
    let mut meta = Document::new();
    meta.insert(crate::names::DEVICE, r.device.as_str());
    for (k, v) in &r.tags {
        size += k.len() + v.len() + 8;
        meta.insert(k.as_str(), v.as_str());
    }
    let mut doc = Document::new();
    doc.insert("_id", Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: id(r).to_vec() }));
    doc.insert(crate::names::TIME, DateTime::from_millis(r.time.div_euclid(1_000_000)));
    doc.insert("meta", meta);
    for (k, v) in &r.fields {
        if k == "_id" || k == "meta" {
            return Err(format!("field {k:?} would replace the document's own {k:?}"));
        }
        size += k.len() + 16;
        let value = match v {
            FieldValue::Int(i) => Bson::Int64(*i),
            FieldValue::Float(f) => Bson::Double(*f),
            FieldValue::Bool(b) => Bson::Boolean(*b),
            FieldValue::Str(s) => {
                size += s.len();
                Bson::String(s.clone())
            }
        };
        doc.insert(k.as_str(), value);
    }
    if size > MAX_DOC_BYTES {
        return Err(format!("its document of about {size} bytes is over MongoDB's 16 MiB limit"));
    }
    Ok(doc)
}

/// The record's content hash, its `_id`.
pub fn id(r: &Record) -> [u8; 16] {
    let mut h = Sha256::new();
    let mut s = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    s(r.measurement.as_bytes());
    s(&r.time.to_le_bytes());
    s(r.device.as_bytes());
    s(&(r.tags.len() as u64).to_le_bytes());
    for (k, v) in &r.tags {
        s(k.as_bytes());
        s(v.as_bytes());
    }
    for (k, v) in &r.fields {
        s(k.as_bytes());
        // A type byte, then the value: 1.0 and 1 differ.
        match v {
            FieldValue::Int(i) => {
                s(b"i");
                s(&i.to_le_bytes());
            }
            FieldValue::Float(f) => {
                s(b"f");
                s(&f.to_bits().to_le_bytes());
            }
            FieldValue::Bool(b) => s(&[b'b', u8::from(*b)]),
            FieldValue::Str(v) => {
                s(b"s");
                s(v.as_bytes());
            }
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_time_meta_and_typed_fields() {
        let mut r = Record::new("env", "d1", 1_767_225_600_123_456_789);
        r.tags.insert("site".into(), "lab".into());
        r.fields.insert("i".into(), FieldValue::Int(7));
        r.fields.insert("f".into(), FieldValue::Float(2.5));
        r.fields.insert("ok".into(), FieldValue::Bool(true));
        r.fields.insert("s".into(), FieldValue::Str("x".into()));
        let d = document(&r).unwrap();
        assert_eq!(d.get_datetime("time").unwrap().timestamp_millis(), 1_767_225_600_123);
        assert_eq!(d.get_document("meta").unwrap().get_str("device").unwrap(), "d1");
        assert_eq!(d.get_document("meta").unwrap().get_str("site").unwrap(), "lab");
        assert_eq!(d.get_i64("i").unwrap(), 7);
        assert_eq!(d.get_f64("f").unwrap(), 2.5);
        assert!(d.get_bool("ok").unwrap());
        assert_eq!(d.get_str("s").unwrap(), "x");
    }

    #[test]
    fn the_id_changes_with_any_part_of_the_record_and_only_then() {
        let mut r = Record::new("env", "d1", 1);
        r.fields.insert("v".into(), FieldValue::Int(1));
        let same = r.clone();
        assert_eq!(id(&r), id(&same));
        let mut other = r.clone();
        other.fields.insert("v".into(), FieldValue::Float(1.0));
        assert_ne!(id(&r), id(&other));
        let mut other = r.clone();
        other.time = 2;
        assert_ne!(id(&r), id(&other));
        // The length prefix keeps "ab"+"c" apart from "a"+"bc".
        let a = Record::new("ab", "c", 1);
        let b = Record::new("a", "bc", 1);
        assert_ne!(id(&a), id(&b));
    }

    #[test]
    fn fields_named_like_the_documents_own_keys_are_refused() {
        let mut r = Record::new("env", "d1", 1);
        r.fields.insert("meta".into(), FieldValue::Int(1));
        assert!(document(&r).unwrap_err().contains("meta"));
    }
}
