//! How exported rows are written: times as RFC 3339 (parsed back from the command line too),
//! CSV rows (`time,device,<columns>`, empty cells for NULL, quoted by the `csv` crate) and JSON
//! lines (`{"measurement", "time", "device", "values": {...}}` with each value's JSON type).

use std::io::Write;
use std::sync::Arc;

use roost_connectors::export::{civil_from_days, days_from_civil, Precision, Row};
use roost_core::FieldValue;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

const NS: i64 = 1_000_000_000;

/// `ns` since the Unix epoch as RFC 3339 in UTC with `precision`'s digits after the second
/// (always all of them, so the column sorts as text): `2026-01-01T00:00:00.123456789Z`.
pub fn rfc3339(ns: i64, precision: Precision) -> String {
    let secs = ns.div_euclid(NS);
    let frac = ns.rem_euclid(NS);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let digits = precision.digits();
    let frac = frac / 10_i64.pow(9 - digits);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:0width$}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        width = digits as usize
    )
}

/// A time from the command line or the API: RFC 3339 (`2026-01-01T12:00:00Z`, any offset, up to
/// nine fractional digits), a date (`2026-01-01`, midnight UTC), or Unix seconds (`1767225600`,
/// fractions allowed). Returns ns since the Unix epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || {
        format!("{text:?} is not a time: use RFC 3339 (2026-01-01T12:00:00Z), a date (2026-01-01) or Unix seconds")
    };
    if t.as_bytes().get(4) != Some(&b'-') {
        return unix_seconds(t).ok_or_else(bad);
    }
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten()
    };
    let (y, mo, d) = (num(0..4).ok_or_else(bad)?, num(5..7).ok_or_else(bad)?, num(8..10).ok_or_else(bad)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&mo) || !(1..=31).contains(&d)
    {
        return Err(bad());
    }
    let day = days_from_civil(y, mo as u32, d as u32);
    if t.len() == 10 {
        return Ok(day * 86_400 * NS);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':')
    {
        return Err(bad());
    }
    let (h, mi, s) =
        (num(11..13).ok_or_else(bad)?, num(14..16).ok_or_else(bad)?, num(17..19).ok_or_else(bad)?);
    if h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let mut rest = &t[19..];
    let mut frac = 0_i64;
    if let Some(digits) = rest.strip_prefix('.') {
        let n = digits.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return Err(bad());
        }
        frac = digits[..n].parse::<i64>().map_err(|_| bad())? * 10_i64.pow(9 - n as u32);
        rest = &digits[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(bad()),
            };
            let (oh, om) = rest[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om): (i64, i64) = (oh.parse().map_err(|_| bad())?, om.parse().map_err(|_| bad())?);
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = day * 86_400 + h * 3600 + mi * 60 + s - offset;
    secs.checked_mul(NS).and_then(|ns| ns.checked_add(frac)).ok_or_else(bad)
}

fn unix_seconds(t: &str) -> Option<i64> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || frac.len() > 9 || !digits(whole) || !digits(frac) {
        return None;
    }
    let frac =
        if frac.is_empty() { 0 } else { frac.parse::<i64>().ok()? * 10_i64.pow(9 - frac.len() as u32) };
    let ns = whole.parse::<i64>().ok()?.checked_mul(NS)?.checked_add(frac)?;
    Some(if neg { -ns } else { ns })
}

/// A value as a CSV cell: integers in decimal, floats in their shortest exact form (always
/// with a `.` or an exponent, so `21.0` stays a float), `true`/`false`, strings as they are.
fn cell(v: &FieldValue) -> String {
    match v {
        FieldValue::Int(i) => i.to_string(),
        FieldValue::Float(f) => format!("{f:?}"),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::Str(s) => s.clone(),
    }
}

/// Writes one measurement's rows as CSV.
pub struct CsvRows {
    writer: csv::Writer<Line>,
    line: Line,
    /// Column name -> position after `time` and `device`.
    index: std::collections::HashMap<Arc<str>, usize>,
    cells: Vec<String>,
    precision: Precision,
}

impl CsvRows {
    /// Writes the header `time,device,<columns>` to `out`.
    pub fn new(columns: &[String], precision: Precision, out: &mut dyn Write) -> std::io::Result<CsvRows> {
        let line = Line::default();
        let mut rows = CsvRows {
            writer: csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(line.clone()),
            line,
            index: columns.iter().enumerate().map(|(i, c)| (Arc::from(c.as_str()), i)).collect(),
            cells: vec![String::new(); columns.len() + 2],
            precision,
        };
        let header = ["time", "device"].into_iter().chain(columns.iter().map(String::as_str));
        rows.writer.write_record(header)?;
        rows.drain(out)?;
        Ok(rows)
    }

    pub fn write(&mut self, row: &Row, out: &mut dyn Write) -> std::io::Result<()> {
        self.cells.iter_mut().for_each(String::clear);
        self.cells[0] = rfc3339(row.time, self.precision);
        self.cells[1].push_str(&row.device);
        for (name, value) in &row.values {
            // A column that appeared after the header was read has no place: the header is
            // read in the same snapshot as the rows for every kind but MongoDB's first pass.
            if let Some(&i) = self.index.get(name) {
                self.cells[i + 2] = cell(value);
            }
        }
        self.writer.write_record(&self.cells)?;
        self.drain(out)
    }

    fn drain(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.writer.flush()?;
        let mut buf = self.line.0.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&buf)?;
        buf.clear();
        Ok(())
    }
}

/// What the CSV writer wrote since it was last drained.
#[derive(Clone, Default)]
struct Line(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One row as a JSON line.
pub fn jsonl(measurement: &str, row: &Row, precision: Precision, out: &mut dyn Write) -> std::io::Result<()> {
    let line = JsonLine { measurement, row, time: rfc3339(row.time, precision) };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

struct JsonLine<'a> {
    measurement: &'a str,
    row: &'a Row,
    time: String,
}

impl Serialize for JsonLine<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("measurement", self.measurement)?;
        map.serialize_entry("time", &self.time)?;
        map.serialize_entry("device", &self.row.device)?;
        map.serialize_entry("values", &Values(&self.row.values))?;
        map.end()
    }
}

struct Values<'a>(&'a [(Arc<str>, FieldValue)]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            match value {
                FieldValue::Int(i) => map.serialize_entry(&**name, i)?,
                FieldValue::Float(f) if f.is_finite() => map.serialize_entry(&**name, f)?,
                // JSON has no NaN or infinities: written as the strings CSV holds.
                FieldValue::Float(f) => map.serialize_entry(&**name, &format!("{f:?}"))?,
                FieldValue::Bool(b) => map.serialize_entry(&**name, b)?,
                FieldValue::Str(v) => map.serialize_entry(&**name, v)?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_with_the_stored_precision() {
        let t = 1_767_225_600_123_456_789;
        assert_eq!(rfc3339(t, Precision::Nanos), "2026-01-01T00:00:00.123456789Z");
        assert_eq!(rfc3339(t, Precision::Micros), "2026-01-01T00:00:00.123456Z");
        assert_eq!(rfc3339(t, Precision::Millis), "2026-01-01T00:00:00.123Z");
        assert_eq!(rfc3339(-1, Precision::Nanos), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn times_parse_from_rfc3339_dates_and_unix_seconds() {
        let t = 1_767_225_600 * NS;
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(t));
        assert_eq!(parse_time("2026-01-01"), Ok(t));
        assert_eq!(parse_time("2026-01-01T02:00:00.5+02:00"), Ok(t + NS / 2));
        assert_eq!(parse_time("2026-01-01T00:00:00.123456789Z"), Ok(t + 123_456_789));
        assert_eq!(parse_time("1767225600"), Ok(t));
        assert_eq!(parse_time("1767225600.25"), Ok(t + NS / 4));
        for bad in ["", "yesterday", "2026-13-01", "2026-01-01T25:00:00Z", "2026-01-01T00:00:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        for ns in [0, t + 1, -NS - 7] {
            assert_eq!(parse_time(&rfc3339(ns, Precision::Nanos)), Ok(ns));
        }
    }

    #[test]
    fn csv_keeps_types_visible_and_quotes() {
        let row = Row {
            time: 0,
            device: "d,1".into(),
            values: vec![
                (Arc::from("f"), FieldValue::Float(21.0)),
                (Arc::from("s"), FieldValue::Str("a \"b\"\nc".into())),
            ],
        };
        let mut out = Vec::new();
        let cols = ["f".to_owned(), "i".to_owned(), "s".to_owned()];
        let mut w = CsvRows::new(&cols, Precision::Millis, &mut out).unwrap();
        w.write(&row, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "time,device,f,i,s\n1970-01-01T00:00:00.000Z,\"d,1\",21.0,,\"a \"\"b\"\"\nc\"\n"
        );
    }

    #[test]
    fn json_lines_keep_each_values_type() {
        let row = Row {
            time: 0,
            device: "d".into(),
            values: vec![
                (Arc::from("i"), FieldValue::Int(3)),
                (Arc::from("f"), FieldValue::Float(3.0)),
                (Arc::from("b"), FieldValue::Bool(false)),
                (Arc::from("n"), FieldValue::Float(f64::NAN)),
            ],
        };
        let mut out = Vec::new();
        jsonl("env", &row, Precision::Nanos, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"measurement\":\"env\",\"time\":\"1970-01-01T00:00:00.000000000Z\",\"device\":\"d\",\
             \"values\":{\"i\":3,\"f\":3.0,\"b\":false,\"n\":\"NaN\"}}\n"
        );
    }
}
