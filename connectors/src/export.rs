//! Reading records back out of a sink's database, for `roost export`: the query ([`Query`]), the
//! row ([`Row`]: time in ns, device, then the named values with their types) and the read side
//! every kind implements ([`Source`], opened from the sink's own options by [`OpenSource`]).
//!
//! A source lists the measurements Roost made (SQL: tables that start with `time, device`;
//! the checkpoint table is never one), the columns of one (for CSV headers), and streams its
//! rows ordered by time in constant memory: server-side cursors (PostgreSQL portals), row by
//! row reads (MySQL), chunked responses (InfluxDB) or driver cursors (MongoDB), and a bounded
//! channel from a blocking reader (SQLite). Each kind's folder has an `export.rs`.
//!
//! Times: `from` is inclusive, `to` exclusive, both in ns; a database that keeps a coarser
//! precision ([`Precision`]) compares its stored times with them as if they were ns.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use roost_core::FieldValue;
use thiserror::Error;

use crate::{SinkConfig, SinkContext};

/// What to read: every filter is optional; empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Measurements by name (without the sink's table, measurement or collection prefix).
    pub measurements: Vec<String>,
    /// Devices by name.
    pub devices: Vec<String>,
    /// Records at or after this time (ns since the Unix epoch).
    pub from: Option<i64>,
    /// Records before this time (ns since the Unix epoch).
    pub to: Option<i64>,
}

impl Query {
    /// `from` in units of `unit_ns` (a database's precision), rounded up: a stored time `t`
    /// (in those units) is at or after `from` exactly when `t >= from_in(unit)`.
    pub fn from_in(&self, unit_ns: i64) -> Option<i64> {
        self.from.map(|t| ceil_div(t, unit_ns))
    }

    /// `to` in units of `unit_ns`, rounded up: `t * unit < to` exactly when `t < to_in(unit)`.
    pub fn to_in(&self, unit_ns: i64) -> Option<i64> {
        self.to.map(|t| ceil_div(t, unit_ns))
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar (how
/// MySQL's `DATETIME` values and RFC 3339 times are built from a record's time).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) in the proleptic Gregorian calendar -> days since 1970-01-01: the inverse
/// of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * i64::from((m + 9) % 12) + 2) / 5 + i64::from(d) - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The measurements among a database's table (or measurement, or collection) `names`: those
/// that start with the sink's `prefix`, without it (a name that is only the prefix is none).
pub(crate) fn unprefixed<S: AsRef<str>>(names: impl IntoIterator<Item = S>, prefix: &str) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|n| n.as_ref().strip_prefix(prefix).filter(|m| !m.is_empty()).map(str::to_owned))
        .collect()
}

/// The time precision a database keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanos,
    Micros,
    Millis,
}

impl Precision {
    /// Digits after the second.
    pub fn digits(self) -> u32 {
        match self {
            Precision::Nanos => 9,
            Precision::Micros => 6,
            Precision::Millis => 3,
        }
    }

    /// As the manifest names it: `ns`, `us`, `ms`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Nanos => "ns",
            Precision::Micros => "us",
            Precision::Millis => "ms",
        }
    }
}

/// One stored record as read back: NULLs (a column the record had no value for) are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// ns since the Unix epoch, at the database's [`Precision`].
    pub time: i64,
    pub device: String,
    /// Tags (as strings) and fields with their stored types; names shared between rows.
    pub values: Vec<(Arc<str>, FieldValue)>,
}

/// Rows of one measurement, in time order.
pub type Rows<'a> = BoxStream<'a, Result<Row, ExportError>>;

/// Why reading failed.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The sink's options cannot be used to read (a missing file, a bad URL).
    #[error("{0}")]
    Config(String),
    /// The database cannot be read as records at all.
    #[error("{0}")]
    Unsupported(String),
    /// The database did not answer, or failed a query; trying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A measurement asked for is not in the database.
    #[error("no measurement {name:?} in this sink; it has: {}", list(known))]
    UnknownMeasurement { name: String, known: Vec<String> },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none yet (nothing was written to it)".into()
    } else {
        names.join(", ")
    }
}

/// The read side of a sink's database.
#[async_trait]
pub trait Source: Send {
    /// The sink's kind.
    fn kind(&self) -> &'static str;

    /// The precision of stored times.
    fn precision(&self) -> Precision;

    /// The measurements Roost made, sorted, without the sink's prefix.
    async fn measurements(&mut self) -> Result<Vec<String>, ExportError>;

    /// The names of the measurement's columns after `time` and `device` (tags and fields), in
    /// the order a CSV header lists them. Schemaless databases may read the matching records
    /// once to collect them (memory bounded by the number of distinct names).
    async fn columns(&mut self, measurement: &str, query: &Query) -> Result<Vec<String>, ExportError>;

    /// The measurement's rows that match `query`'s devices and times, ordered by time (then
    /// device).
    async fn rows<'a>(&'a mut self, measurement: &str, query: &Query) -> Result<Rows<'a>, ExportError>;
}

/// The measurements `query` names, checked against what the database has (names compared as
/// the database does: without case where `fold_case`), or all of them when it names none.
pub async fn resolve(source: &mut dyn Source, query: &Query) -> Result<Vec<String>, ExportError> {
    let known = source.measurements().await?;
    if query.measurements.is_empty() {
        return Ok(known);
    }
    let mut out: Vec<String> = Vec::new();
    for name in &query.measurements {
        let found = known
            .iter()
            .find(|k| *k == name)
            .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(name)))
            .ok_or_else(|| ExportError::UnknownMeasurement { name: name.clone(), known: known.clone() })?;
        if !out.contains(found) {
            out.push(found.clone());
        }
    }
    Ok(out)
}

/// A kind's options opening its read side: implemented by every kind's config.
#[async_trait]
pub trait OpenSource: SinkConfig {
    /// Connects (or opens the file) and checks the database answers. `kind` is the name it
    /// was configured under.
    async fn open_source(
        &self,
        kind: &'static str,
        ctx: &SinkContext,
    ) -> Result<Box<dyn Source>, ExportError>;
}

/// Names shared between rows: one `Arc<str>` per distinct name, however many rows use it.
#[derive(Debug, Default)]
pub struct Names(std::collections::HashMap<String, Arc<str>>);

impl Names {
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(name.to_owned(), n.clone());
        n
    }
}

/// A cursor over one measurement's rows, read a page at a time.
#[async_trait]
pub(crate) trait Cursor: Send {
    /// The next page of rows; `None` when there are no more.
    async fn next_batch(&mut self) -> Result<Option<Vec<Row>>, ExportError>;
}

/// The rows of `cursor`, a page read only when the one before is used up.
pub(crate) fn batched<'a, C: Cursor + 'a>(cursor: C) -> Rows<'a> {
    use futures::StreamExt;
    let stream = futures::stream::unfold(
        (cursor, Vec::<Row>::new().into_iter(), false),
        |(mut cursor, mut buf, done)| async move {
            loop {
                if let Some(row) = buf.next() {
                    return Some((Ok(row), (cursor, buf, done)));
                }
                if done {
                    return None;
                }
                match cursor.next_batch().await {
                    Ok(Some(batch)) => buf = batch.into_iter(),
                    Ok(None) => return None,
                    Err(e) => return Some((Err(e), (cursor, Vec::new().into_iter(), true))),
                }
            }
        },
    );
    stream.boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_convert_both_ways() {
        for days in [-719_468, -1, 0, 1, 11_016, 20_454, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn bounds_round_up_to_the_database_precision() {
        let q = Query { from: Some(1_500), to: Some(3_000), ..Query::default() };
        assert_eq!((q.from_in(1000), q.to_in(1000)), (Some(2), Some(3)));
        let q = Query { from: Some(-1_500), to: Some(-1_000), ..Query::default() };
        assert_eq!((q.from_in(1000), q.to_in(1000)), (Some(-1), Some(-1)));
        assert_eq!(Query::default().from_in(1), None);
    }

    #[test]
    fn unknown_measurements_list_the_known_ones() {
        let e = ExportError::UnknownMeasurement { name: "x".into(), known: vec!["a".into(), "b".into()] };
        assert_eq!(e.to_string(), "no measurement \"x\" in this sink; it has: a, b");
    }
}
