//! How records are kept in a sink's spool: one spool entry holds a chunk of records in a small
//! binary form (a version byte, then each record's fields with length-prefixed strings and
//! little-endian numbers). JSON would lose the difference between `1` and `1.0` and cannot hold
//! a non-finite float; serde's binary formats cannot read [`FieldValue`]'s untagged form.

use std::collections::BTreeMap;

use roost_core::{FieldValue, Record};

const VERSION: u8 = 1;

/// Why an entry could not be read back as records.
#[derive(Debug, thiserror::Error)]
#[error("spool entry is not a chunk of records: {0}")]
pub struct DecodeError(&'static str);

/// The most records in one entry: a record's id in its stream is `entry seq << 20 | index`.
pub const MAX_RECORDS: usize = (1 << ID_BITS) - 1;
/// Bits of a record id that hold its index in its entry.
pub const ID_BITS: u32 = 20;

/// Encodes records as entries of about `target_bytes` each (at least one record, at most
/// [`MAX_RECORDS`]), in order.
pub fn encode_chunks(records: &[Record], target_bytes: usize) -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut out = vec![VERSION, 0, 0, 0, 0];
        let mut n = 0;
        while start + n < records.len() && n < MAX_RECORDS && (n == 0 || out.len() < target_bytes) {
            put_record(&mut out, &records[start + n]);
            n += 1;
        }
        out[1..5].copy_from_slice(&(n as u32).to_le_bytes());
        entries.push(out);
        start += n;
    }
    entries
}

fn put_record(out: &mut Vec<u8>, r: &Record) {
    put_str(out, &r.measurement);
    out.extend_from_slice(&r.time.to_le_bytes());
    put_str(out, &r.device);
    put_len(out, r.tags.len());
    for (k, v) in &r.tags {
        put_str(out, k);
        put_str(out, v);
    }
    put_len(out, r.fields.len());
    for (k, v) in &r.fields {
        put_str(out, k);
        match v {
            FieldValue::Int(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            FieldValue::Float(f) => {
                out.push(1);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            FieldValue::Bool(b) => out.extend_from_slice(&[2, *b as u8]),
            FieldValue::Str(s) => {
                out.push(3);
                put_str(out, s);
            }
        }
    }
}

/// How many records a spool entry holds (0 for one that cannot be read), without decoding them.
pub fn record_count(data: &[u8]) -> u64 {
    let mut r = Bytes(data);
    match r.take(1) {
        Ok([VERSION]) => r.len().map_or(0, |n| n as u64),
        _ => 0,
    }
}

/// Reads a spool entry back into its records.
pub fn decode(data: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut r = Bytes(data);
    if r.take(1)?[0] != VERSION {
        return Err(DecodeError("unknown version"));
    }
    let n = r.len()?;
    // Each record takes at least 25 bytes: do not trust a count the data cannot hold.
    let mut out = Vec::with_capacity(n.min(data.len() / 25));
    for _ in 0..n {
        let measurement = r.string()?;
        let time = i64::from_le_bytes(r.array()?);
        let device = r.string()?;
        let mut tags = BTreeMap::new();
        for _ in 0..r.len()? {
            tags.insert(r.string()?, r.string()?);
        }
        let mut fields = BTreeMap::new();
        for _ in 0..r.len()? {
            let name = r.string()?;
            let value = match r.take(1)?[0] {
                0 => FieldValue::Int(i64::from_le_bytes(r.array()?)),
                1 => FieldValue::Float(f64::from_bits(u64::from_le_bytes(r.array()?))),
                2 => FieldValue::Bool(r.take(1)?[0] != 0),
                3 => FieldValue::Str(r.string()?),
                _ => return Err(DecodeError("unknown field type")),
            };
            fields.insert(name, value);
        }
        out.push(Record { measurement, time, device, tags, fields });
    }
    if !r.0.is_empty() {
        return Err(DecodeError("bytes after the last record"));
    }
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError("a string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All records as one entry.
    fn encode(records: &[Record]) -> Vec<u8> {
        let mut entries = encode_chunks(records, usize::MAX);
        assert!(entries.len() <= 1);
        entries.pop().unwrap_or_else(|| vec![VERSION, 0, 0, 0, 0])
    }

    fn record(i: i64) -> Record {
        Record {
            measurement: "env".into(),
            time: 1_700_000_000_000_000_000 + i,
            device: format!("d-{i}"),
            tags: [("site".to_string(), "ü-1".to_string())].into(),
            fields: [
                ("n".to_string(), FieldValue::Int(-i)),
                ("one".to_string(), FieldValue::Float(1.0)),
                ("nan".to_string(), FieldValue::Float(f64::NAN)),
                ("ok".to_string(), FieldValue::Bool(true)),
                ("s".to_string(), FieldValue::Str(String::new())),
            ]
            .into(),
        }
    }

    #[test]
    fn records_round_trip_with_their_types() {
        let records: Vec<Record> = (0..3).map(record).collect();
        let back = decode(&encode(&records)).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in records.iter().zip(&back) {
            assert_eq!(
                (&a.measurement, a.time, &a.device, &a.tags),
                (&b.measurement, b.time, &b.device, &b.tags)
            );
            assert_eq!(b.fields["one"], FieldValue::Float(1.0), "1.0 stays a float");
            assert_eq!(b.fields["n"], a.fields["n"]);
            assert!(matches!(b.fields["nan"], FieldValue::Float(f) if f.is_nan()));
            assert_eq!(b.fields["ok"], FieldValue::Bool(true));
            assert_eq!(b.fields["s"], FieldValue::Str(String::new()));
        }
        assert!(decode(&encode(&[])).unwrap().is_empty());
    }

    #[test]
    fn chunks_hold_every_record_once_in_order() {
        let records: Vec<Record> = (0..100).map(record).collect();
        let one = encode(&records[..1]).len();
        let entries = encode_chunks(&records, one * 10);
        assert_eq!(entries.len(), 10);
        let back: Vec<Record> = entries.iter().flat_map(|e| decode(e).unwrap()).collect();
        assert_eq!(
            back.iter().map(|r| r.time).collect::<Vec<_>>(),
            records.iter().map(|r| r.time).collect::<Vec<_>>()
        );
        // A record larger than the target gets an entry of its own.
        assert_eq!(encode_chunks(&records[..3], 1).len(), 3);
        assert!(encode_chunks(&[], 100).is_empty());
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let data = encode(&[record(1), record(2)]);
        for cut in 0..data.len() {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = data.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut version = data.clone();
        version[0] = 9;
        assert!(decode(&version).is_err());
        // A huge count with no data behind it fails without allocating for it.
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
