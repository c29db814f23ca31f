//! How a record becomes one line of InfluxDB line protocol: our own encoder, escaping as the
//! line protocol reference says.
//!
//! ```text
//! measurement[,device=D][,tag=v...] field=value[,field=value...] time_ns\n
//! ```
//!
//! - measurement: `,` and space are escaped with `\`;
//! - tag keys, tag values, field keys: `,`, `=` and space are escaped with `\`; tags are sent
//!   sorted by key (the device is the tag `device`); a tag with an empty value is left out
//!   (line protocol cannot express one; InfluxDB reads a missing tag as empty);
//! - string field values: in double quotes, with `"` and `\` escaped;
//! - integers with the `i` suffix, floats in their shortest round-trip form (exponent form
//!   outside 1e-5..1e16), booleans `true`/`false`, the time in nanoseconds.
//!
//! What line protocol cannot carry is refused (the record goes to the dead-letter store, with
//! the reason), never altered:
//! - a newline or carriage return in a name, a tag value or the device (it would end the line;
//!   inside a string field value a newline is sent as is, between the quotes, which InfluxDB
//!   1.x and 2.x read back unchanged);
//! - in a name, tag value or device, a `\` at the end or before `\`, `,`, `=` or space:
//!   InfluxDB 1.x cannot read such a value back and VictoriaMetrics reads it differently;
//! - NaN and infinite floats; a time outside InfluxDB's range; a record with no fields; a
//!   measurement that starts with `#` (a comment line).

use std::io::Write;

use roost_core::{FieldValue, Record};

use super::config::StringFields;
use crate::names::DEVICE;

/// InfluxDB's time range (1677-09-21 to 2262-04-11), in ns.
pub const MIN_TIME: i64 = i64::MIN + 2;
pub const MAX_TIME: i64 = i64::MAX - 1;

/// The InfluxDB type name of a field value, as its error messages spell it.
pub fn influx_type(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Int(_) => "integer",
        FieldValue::Float(_) => "float",
        FieldValue::Bool(_) => "boolean",
        FieldValue::Str(_) => "string",
    }
}

/// Appends `r` as one line (with its `\n`) to `out`, its measurement prefixed with `prefix`. On
/// `Err` (why the record cannot be sent), `out` is left as it was.
pub fn encode_line(r: &Record, prefix: &str, strings: StringFields, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let result = encode_into(r, prefix, strings, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_into(r: &Record, prefix: &str, strings: StringFields, out: &mut Vec<u8>) -> Result<(), String> {
    if r.fields.is_empty() {
        return Err("a record with no fields cannot be written to InfluxDB".into());
    }
    if !(MIN_TIME..=MAX_TIME).contains(&r.time) {
        return Err(format!("time {} ns is outside InfluxDB's time range", r.time));
    }
    let measurement = format!("{prefix}{}", r.measurement);
    if measurement.is_empty() {
        return Err("measurement: empty".into());
    }
    if measurement.starts_with('#') {
        return Err("measurement: a line starting with '#' is a comment in line protocol".into());
    }
    escape(&measurement, b", ", out).map_err(|e| format!("measurement: {e}"))?;

    // Tags sorted by key, with the device among them.
    let mut device_done = r.device.is_empty();
    for (k, v) in &r.tags {
        if !device_done && DEVICE < k.as_str() {
            tag(DEVICE, &r.device, out)?;
            device_done = true;
        }
        if !v.is_empty() {
            tag(k, v, out)?;
        }
    }
    if !device_done {
        tag(DEVICE, &r.device, out)?;
    }

    let mut sep = b' ';
    for (k, v) in &r.fields {
        out.push(sep);
        sep = b',';
        if k.is_empty() {
            return Err("field key: empty".into());
        }
        escape(k, b",= ", out).map_err(|e| format!("field key: {e}"))?;
        out.push(b'=');
        match v {
            FieldValue::Int(i) => {
                let _ = write!(out, "{i}i");
            }
            FieldValue::Float(f) => {
                if !f.is_finite() {
                    return Err(format!("field {k:?}: line protocol cannot carry {f}"));
                }
                let a = f.abs();
                if a != 0.0 && !(1e-5..1e16).contains(&a) {
                    let _ = write!(out, "{f:e}");
                } else {
                    let _ = write!(out, "{f}");
                }
            }
            FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            FieldValue::Str(s) => {
                if strings == StringFields::Reject {
                    return Err(format!(
                        "field {k:?} is a string and this sink has string_fields = \"reject\" \
                         (the server stores only numbers)"
                    ));
                }
                out.push(b'"');
                for &b in s.as_bytes() {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
    }
    let _ = writeln!(out, " {}", r.time);
    Ok(())
}

fn tag(k: &str, v: &str, out: &mut Vec<u8>) -> Result<(), String> {
    out.push(b',');
    if k.is_empty() {
        return Err("tag key: empty".into());
    }
    escape(k, b",= ", out).map_err(|e| format!("tag key: {e}"))?;
    out.push(b'=');
    escape(v, b",= ", out).map_err(|e| format!("tag {k:?}: {e}"))
}

/// Writes `s` with each byte of `special` escaped by a backslash, refusing what cannot be read
/// back (see the module docs).
fn escape(s: &str, special: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' | b'\r' => {
                return Err(format!("{s:?} holds a line break, which line protocol cannot carry"))
            }
            b'\\' => {
                let next = bytes.get(i + 1);
                if next.is_none_or(|n| matches!(n, b'\\' | b',' | b'=' | b' ')) {
                    return Err(format!(
                        "{s:?} has a backslash at its end or before \\ , = or space, which line protocol \
                         cannot carry"
                    ));
                }
                out.push(b);
            }
            _ => {
                if special.contains(&b) {
                    out.push(b'\\');
                }
                out.push(b);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: &Record) -> Result<String, String> {
        let mut out = Vec::new();
        encode_line(r, "", StringFields::Write, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn escapes_each_part_as_the_reference_says() {
        let mut r = Record::new("my meas,x", "dev 1", 1_700_000_000_000_000_000);
        r.tags.insert("a=b".into(), "c,d e".into());
        r.tags.insert("zone".into(), String::new());
        r.fields.insert("f k".into(), FieldValue::Str("say \"hi\" \\o/\nbye".into()));
        r.fields.insert("i".into(), FieldValue::Int(-3));
        r.fields.insert("ok".into(), FieldValue::Bool(true));
        r.fields.insert("x".into(), FieldValue::Float(21.0));
        assert_eq!(
            line(&r).unwrap(),
            "my\\ meas\\,x,a\\=b=c\\,d\\ e,device=dev\\ 1 f\\ k=\"say \\\"hi\\\" \\\\o/\nbye\",i=-3i,ok=true,x=21 \
             1700000000000000000\n"
        );
    }

    #[test]
    fn the_device_tag_sits_in_key_order() {
        let mut r = Record::new("m", "d", 5);
        r.tags.insert("a".into(), "1".into());
        r.tags.insert("z".into(), "2".into());
        r.fields.insert("v".into(), FieldValue::Float(1e-7));
        assert_eq!(line(&r).unwrap(), "m,a=1,device=d,z=2 v=1e-7 5\n");
        let mut r = Record::new("m", "", -5);
        r.fields.insert("v".into(), FieldValue::Float(1.5e300));
        assert_eq!(line(&r).unwrap(), "m v=1.5e300 -5\n");
    }

    #[test]
    fn what_line_protocol_cannot_carry_is_refused() {
        let base = || {
            let mut r = Record::new("m", "d", 1);
            r.fields.insert("v".into(), FieldValue::Int(1));
            r
        };
        let mut r = base();
        r.device = "a\nb".into();
        assert!(line(&r).unwrap_err().contains("line break"));
        let mut r = base();
        r.tags.insert("t".into(), "ends\\".into());
        assert!(line(&r).unwrap_err().contains("backslash"));
        let mut r = base();
        r.fields.insert("n".into(), FieldValue::Float(f64::NAN));
        assert!(line(&r).unwrap_err().contains("NaN"));
        let mut r = base();
        r.time = i64::MIN;
        assert!(line(&r).unwrap_err().contains("time range"));
        assert!(line(&Record::new("m", "d", 1)).unwrap_err().contains("no fields"));
        let mut r = base();
        r.fields.insert("s".into(), FieldValue::Str("x".into()));
        let mut out = b"kept".to_vec();
        assert!(encode_line(&r, "", StringFields::Reject, &mut out).unwrap_err().contains("reject"));
        assert_eq!(out, b"kept");
        // A backslash before an ordinary character is sent as is.
        let mut r = base();
        r.tags.insert("t".into(), "c:\\dir".into());
        assert_eq!(line(&r).unwrap(), "m,device=d,t=c:\\dir v=1i 1\n");
    }

    /// An independent reader of one line, written from the line protocol reference (not from
    /// the encoder): measurement, tags, fields, time.
    type Parsed = (String, Vec<(String, String)>, Vec<(String, FieldValue)>, i64);

    fn parse(line: &str) -> Parsed {
        let b: Vec<char> = line.strip_suffix('\n').expect("a line ends with a newline").chars().collect();
        let mut i = 0;
        // Reads up to an unescaped char of `stop`; `\x` with x in `esc` is x, any other `\` is kept.
        let word = |i: &mut usize, stop: &[char], esc: &[char]| {
            let mut out = String::new();
            while *i < b.len() && !stop.contains(&b[*i]) {
                if b[*i] == '\\' && *i + 1 < b.len() && esc.contains(&b[*i + 1]) {
                    out.push(b[*i + 1]);
                    *i += 2;
                } else {
                    out.push(b[*i]);
                    *i += 1;
                }
            }
            out
        };
        let measurement = word(&mut i, &[',', ' '], &[',', ' ']);
        let mut tags = Vec::new();
        while b[i] == ',' {
            i += 1;
            let k = word(&mut i, &['='], &[',', '=', ' ']);
            i += 1;
            let v = word(&mut i, &[',', ' '], &[',', '=', ' ']);
            tags.push((k, v));
        }
        assert_eq!(b[i], ' ');
        let mut fields = Vec::new();
        loop {
            i += 1;
            let k = word(&mut i, &['='], &[',', '=', ' ']);
            i += 1;
            let v = if b[i] == '"' {
                i += 1;
                let mut s = String::new();
                while b[i] != '"' {
                    if b[i] == '\\' {
                        i += 1;
                    }
                    s.push(b[i]);
                    i += 1;
                }
                i += 1;
                FieldValue::Str(s)
            } else {
                let raw: String = b[i..].iter().take_while(|c| **c != ',' && **c != ' ').collect();
                i += raw.chars().count();
                match raw.as_str() {
                    "true" => FieldValue::Bool(true),
                    "false" => FieldValue::Bool(false),
                    r if r.ends_with('i') => FieldValue::Int(r[..r.len() - 1].parse().unwrap()),
                    r => FieldValue::Float(r.parse().unwrap()),
                }
            };
            fields.push((k, v));
            if b[i] == ' ' {
                break;
            }
        }
        let time = b[i + 1..].iter().collect::<String>().parse().unwrap();
        (measurement, tags, fields, time)
    }

    /// Whether `s` holds what the encoder must refuse in a name or tag value.
    fn unsendable(s: &str) -> bool {
        let b = s.as_bytes();
        b.iter().enumerate().any(|(i, &c)| {
            c == b'\n' || c == b'\r' || (c == b'\\' && b.get(i + 1).is_none_or(|n| b"\\,= ".contains(n)))
        })
    }

    /// Strings heavy in the characters line protocol escapes, with a few it cannot carry.
    fn text_of(len: std::ops::Range<usize>) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                3 => Just(','), 3 => Just('='), 3 => Just(' '), 3 => Just('"'), 2 => Just('\\'),
                1 => Just('#'), 1 => Just('\n'), 12 => any::<char>(),
            ],
            len,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        text_of(0..6)
    }

    fn name() -> impl proptest::strategy::Strategy<Value = String> {
        text_of(1..6)
    }

    fn value() -> impl proptest::strategy::Strategy<Value = FieldValue> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(FieldValue::Int),
            any::<f64>().prop_map(FieldValue::Float),
            any::<bool>().prop_map(FieldValue::Bool),
            text().prop_map(FieldValue::Str),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Arbitrary records either encode to a line the independent reader reads back as the
        /// record, or are refused for one of the documented reasons.
        #[test]
        fn encoded_lines_read_back_as_the_record_or_are_refused_for_a_reason(
            measurement in name(),
            device in text(),
            tags in proptest::collection::btree_map(name(), text(), 0..3),
            fields in proptest::collection::btree_map(name(), value(), 1..4),
            time in proptest::prelude::any::<i64>(),
        ) {
            let mut r = Record::new(measurement, device, time);
            r.tags = tags.into_iter().filter(|(k, _)| k != DEVICE).collect();
            r.fields = fields;
            match line(&r) {
                Ok(l) => {
                    let (m, t, f, at) = parse(&l);
                    let mut want_tags: Vec<(String, String)> =
                        r.tags.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
                    if !r.device.is_empty() {
                        want_tags.push((DEVICE.into(), r.device.clone()));
                    }
                    want_tags.sort();
                    proptest::prop_assert_eq!(m, r.measurement.clone());
                    proptest::prop_assert_eq!(t, want_tags);
                    proptest::prop_assert_eq!(f, r.fields.clone().into_iter().collect::<Vec<_>>());
                    proptest::prop_assert_eq!(at, r.time);
                }
                Err(why) => {
                    let names = std::iter::once(&r.measurement)
                        .chain(std::iter::once(&r.device))
                        .chain(r.tags.keys())
                        .chain(r.tags.values())
                        .chain(r.fields.keys());
                    let explained = r.fields.is_empty()
                        || !(MIN_TIME..=MAX_TIME).contains(&r.time)
                        || r.measurement.is_empty()
                        || r.measurement.starts_with('#')
                        || r.tags.keys().any(String::is_empty)
                        || r.fields.keys().any(String::is_empty)
                        || r.fields.values().any(|v| matches!(v, FieldValue::Float(f) if !f.is_finite()))
                        || names.into_iter().any(|n| unsendable(n));
                    proptest::prop_assert!(explained, "refused without a reason: {why}: {r:?}");
                }
            }
        }
    }
}
