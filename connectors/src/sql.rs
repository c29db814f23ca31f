//! What the typed SQL sinks (postgres, mysql) share: the column types, the schema policy, and
//! the planning of a batch against the cached layout of each table.
//!
//! Schema policy, the same for every typed SQL sink:
//! - a table per measurement (`<table_prefix><measurement>`): `time`, `device`, then a column per
//!   tag (text) and per field (bigint, double, boolean or text, from the first value seen);
//! - a new tag or field adds a column;
//! - an integer into a double column is stored as a double; a float into a bigint column widens
//!   the column to double;
//! - any other type conflict (a string into a numeric column, a number into a boolean or text
//!   column, ...) rejects that record alone, with the reason, and the rest of the batch is written.
//! - a record whose new columns would take its table past `max_columns`, or whose table or column
//!   the database refuses to create for good (a name clash, too many columns, no permission), is
//!   rejected the same way: such errors are never retried.
//!
//! Names are compared without case (`Temp` uses an existing `temp` column), as SQL does.

use std::collections::{HashMap, HashSet};

use roost_core::{FieldValue, Record};

use crate::{names, Rejected, SinkError, WriteOutcome};

/// The column types a typed SQL sink creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    BigInt,
    Double,
    Boolean,
    Text,
}

impl ColType {
    pub fn of(v: &FieldValue) -> ColType {
        match v {
            FieldValue::Int(_) => ColType::BigInt,
            FieldValue::Float(_) => ColType::Double,
            FieldValue::Bool(_) => ColType::Boolean,
            FieldValue::Str(_) => ColType::Text,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ColType::BigInt => "bigint",
            ColType::Double => "double",
            ColType::Boolean => "boolean",
            ColType::Text => "text",
        }
    }
}

/// One value ready to bind, aligned to a table column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(&'a str),
}

/// The known layout of one table: its name as created, and its columns after `time` and `device`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub table: String,
    pub columns: Vec<(String, ColType)>,
    index: HashMap<String, usize>,
}

impl Layout {
    pub fn new(table: String, columns: Vec<(String, ColType)>) -> Self {
        let index = columns.iter().enumerate().map(|(i, (c, _))| (c.to_ascii_lowercase(), i)).collect();
        Layout { table, columns, index }
    }

    fn column(&self, name: &str) -> Option<(usize, ColType)> {
        self.index.get(&name.to_ascii_lowercase()).map(|&i| (i, self.columns[i].1))
    }

    /// The record's values aligned to the columns (time and device excluded), or why the record
    /// cannot be written to this table.
    pub fn cells<'r>(&self, r: &'r Record, out: &mut Vec<Cell<'r>>) -> Result<(), String> {
        out.clear();
        out.resize(self.columns.len(), Cell::Null);
        for (name, tag) in &r.tags {
            match self.column(name) {
                Some((i, ColType::Text)) => out[i] = Cell::Text(tag),
                Some((_, ty)) => return Err(format!("tag {name:?} is text but column is {}", ty.name())),
                None => return Err(format!("no column for tag {name:?}")),
            }
        }
        for (name, value) in &r.fields {
            let Some((i, ty)) = self.column(name) else {
                return Err(format!("no column for field {name:?}"));
            };
            out[i] = match (ty, value) {
                (ColType::BigInt, FieldValue::Int(v)) => Cell::Int(*v),
                (ColType::Double, FieldValue::Int(v)) => Cell::Float(*v as f64),
                (ColType::Double, FieldValue::Float(v)) => Cell::Float(*v),
                (ColType::Boolean, FieldValue::Bool(v)) => Cell::Bool(*v),
                (ColType::Text, FieldValue::Str(v)) => Cell::Text(v),
                (ty, v) => {
                    return Err(format!(
                        "field {name:?} is {} but its column is {}",
                        v.type_name(),
                        ty.name()
                    ))
                }
            };
        }
        Ok(())
    }
}

/// The DDL and catalog reads a typed SQL sink provides; [`prepare`] drives them. A DDL error the
/// database will repeat (a name clash, too many columns, a name too long, no permission) is
/// [`SinkError::Config`]: the records that need that table or column are refused with it. Errors
/// worth retrying are [`SinkError::Unavailable`].
pub(crate) trait Catalog {
    /// The table's columns after `time` and `device`, or `None` if it does not exist. Matches
    /// the name without case and returns it as stored.
    async fn load(&mut self, table: &str) -> Result<Option<Layout>, SinkError>;
    /// Creates the table with `time` and `device` and its index ([`names::index_name`]); fine
    /// if it exists.
    async fn create(&mut self, table: &str) -> Result<(), SinkError>;
    /// Adds a column; fine if another writer added it first.
    async fn add_column(&mut self, table: &str, column: &str, ty: ColType) -> Result<(), SinkError>;
    /// Changes a bigint column to double.
    async fn widen(&mut self, table: &str, column: &str) -> Result<(), SinkError>;
}

/// The default of every SQL sink's `max_columns` option: below SQLite's 2,000, PostgreSQL's
/// 1,600 and InnoDB's 1,017 columns per table.
pub const DEFAULT_MAX_COLUMNS: usize = 1000;

pub fn default_max_columns() -> usize {
    DEFAULT_MAX_COLUMNS
}

/// Checks a `max_columns` option against the database's own limit.
pub fn check_max_columns(kind: &str, max_columns: usize, database_limit: usize) -> Result<(), SinkError> {
    if !(3..=database_limit).contains(&max_columns) {
        return Err(SinkError::Config(format!(
            "{kind} sink: max_columns must be between 3 and {database_limit} (the database's own limit)"
        )));
    }
    Ok(())
}

/// Why a record is refused when its new columns would take `table` past the `max_columns` cap.
pub fn column_cap_reason(table: &str, columns: usize, max_columns: usize) -> String {
    format!(
        "table {table:?} would have {columns} columns, more than the sink's max_columns ({max_columns}); \
         raise max_columns or send fewer distinct tag and field names to this measurement"
    )
}

/// The records of one batch bound for one table.
#[derive(Debug)]
pub struct Group {
    pub layout: Layout,
    /// Positions in the batch, in order.
    pub records: Vec<usize>,
}

/// The rules [`prepare`] applies besides the schema policy.
pub(crate) struct Rules<'a, F> {
    pub table_prefix: &'a str,
    /// A check of the database's own (a value it cannot hold).
    pub check: F,
    /// Columns a table may reach, `time` and `device` included.
    pub max_columns: usize,
    /// The database's limit on a table name, in bytes.
    pub max_name: usize,
}

/// Validates every record, brings each table's schema up to what the batch needs, and returns
/// the records grouped by table. Records that cannot be written go to `rejected`: invalid ones,
/// those that would take a table past `max_columns`, and those whose table or column the
/// database refuses to create (a permanent DDL error); the other tables' records are written.
pub(crate) async fn prepare<C: Catalog>(
    catalog: &mut C,
    cache: &mut HashMap<String, Layout>,
    batch: &[Record],
    rules: &Rules<'_, impl Fn(&Record) -> Result<(), String>>,
    rejected: &mut Vec<Rejected>,
) -> Result<Vec<Group>, SinkError> {
    // Group by table, in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut by_table: HashMap<String, (String, Vec<usize>)> = HashMap::new();
    for (index, r) in batch.iter().enumerate() {
        if let Err(reason) = names::check_record(r).and_then(|()| (rules.check)(r)) {
            rejected.push(Rejected { index, reason });
            continue;
        }
        let table = format!("{}{}", rules.table_prefix, r.measurement);
        if table.len() > rules.max_name {
            let reason = format!(
                "table name {table:?} is longer than the database's limit of {} characters; \
                 shorten the measurement or the sink's table_prefix",
                rules.max_name
            );
            rejected.push(Rejected { index, reason });
            continue;
        }
        let key = table.to_ascii_lowercase();
        let entry = by_table.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (table, Vec::new())
        });
        entry.1.push(index);
    }

    let mut groups = Vec::with_capacity(order.len());
    for key in order {
        let (table, indices) = by_table.remove(&key).unwrap_or_default();
        match prepare_table(catalog, cache.get(&key).cloned(), &table, batch, indices, rules, rejected).await
        {
            Ok(group) => {
                cache.insert(key, group.layout.clone());
                groups.push(group);
            }
            // The table is not one this sink can write (not created by Roost), or the
            // database refuses to create it: its records are refused, the others written.
            Err((SinkError::Config(reason), indices)) => {
                rejected.extend(indices.into_iter().map(|index| Rejected { index, reason: reason.clone() }));
            }
            Err((e, _)) => return Err(e),
        }
    }
    rejected.sort_by_key(|r| r.index);
    Ok(groups)
}

/// [`prepare`] for one table: on error, the error and the records still bound for the table.
async fn prepare_table<C: Catalog>(
    catalog: &mut C,
    cached: Option<Layout>,
    table: &str,
    batch: &[Record],
    mut indices: Vec<usize>,
    rules: &Rules<'_, impl Fn(&Record) -> Result<(), String>>,
    rejected: &mut Vec<Rejected>,
) -> Result<Group, (SinkError, Vec<usize>)> {
    let loaded = match cached {
        Some(l) => Ok(Some(l)),
        None => catalog.load(table).await,
    };
    let mut layout = match loaded {
        Ok(Some(l)) => l,
        Ok(None) => {
            if let Err(e) = catalog.create(table).await {
                return Err((e, indices));
            }
            match catalog.load(table).await {
                Ok(Some(l)) => l,
                // Created "if not exists", yet not a table: another relation (an index, a
                // view) holds the name.
                Ok(None) => {
                    let reason = format!(
                        "table {table:?} cannot be created: the database has another object \
                         (an index, a view) of that name; rename the measurement or that object"
                    );
                    return Err((SinkError::Config(reason), indices));
                }
                Err(e) => return Err((e, indices)),
            }
        }
        Err(e) => return Err((e, indices)),
    };

    // Columns the batch needs that the table lacks; the first value seen sets the type. A
    // record whose new columns would pass the cap is refused before any DDL.
    let mut added = HashSet::new();
    let mut missing = Vec::new();
    let mut width = layout.columns.len() + 2;
    indices.retain(|&i| {
        let r = &batch[i];
        let tags = r.tags.keys().map(|k| (k, ColType::Text));
        let mut new: Vec<(&String, ColType)> = tags
            .chain(r.fields.iter().map(|(k, v)| (k, ColType::of(v))))
            .filter(|(name, _)| layout.column(name).is_none() && !added.contains(&name.to_ascii_lowercase()))
            .collect();
        if width + new.len() > rules.max_columns {
            let reason = column_cap_reason(&layout.table, width + new.len(), rules.max_columns);
            rejected.push(Rejected { index: i, reason });
            return false;
        }
        width += new.len();
        for (name, ty) in new.drain(..) {
            added.insert(name.to_ascii_lowercase());
            missing.push((name.clone(), ty));
        }
        true
    });
    // Columns the database refused to add, with its reason.
    let mut refused: HashMap<String, String> = HashMap::new();
    if !missing.is_empty() {
        for (name, ty) in &missing {
            let result = catalog.add_column(&layout.table, name, *ty).await;
            note_refusal(result, name, &mut refused).map_err(|e| (e, indices.clone()))?;
        }
        layout = reload(catalog, &layout.table).await.map_err(|e| (e, indices.clone()))?;
    }

    // Bigint columns that receive floats become double.
    let mut widen = Vec::new();
    for &i in &indices {
        for (name, v) in &batch[i].fields {
            if let (FieldValue::Float(_), Some((c, ColType::BigInt))) = (v, layout.column(name)) {
                let column = layout.columns[c].0.clone();
                if !widen.contains(&column) {
                    widen.push(column);
                }
            }
        }
    }
    if !widen.is_empty() {
        for column in &widen {
            let result = catalog.widen(&layout.table, column).await;
            note_refusal(result, column, &mut refused).map_err(|e| (e, indices.clone()))?;
        }
        layout = reload(catalog, &layout.table).await.map_err(|e| (e, indices.clone()))?;
    }

    let mut cells = Vec::new();
    let mut records = Vec::with_capacity(indices.len());
    for i in indices {
        let r = &batch[i];
        let names = r.tags.keys().chain(r.fields.keys());
        let why = names.filter_map(|n| refused.get(&n.to_ascii_lowercase())).next();
        match (why, layout.cells(r, &mut cells)) {
            (Some(reason), _) => rejected.push(Rejected { index: i, reason: reason.clone() }),
            (None, Ok(())) => records.push(i),
            (None, Err(reason)) => rejected.push(Rejected { index: i, reason }),
        }
    }
    Ok(Group { layout, records })
}

/// A database driver's error, as the typed SQL sinks read it.
pub(crate) trait DbError {
    /// Whether the error means "try the same batch later" rather than "the data is refused".
    fn is_transient(&self) -> bool;
    /// The error as the operator should read it.
    fn describe(&self) -> String;
}

/// A stream's position ([`crate::Position`] without its ids), stored in the transaction of the
/// batch it ends, in [`crate::CHECKPOINT_TABLE`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint<'a> {
    pub stream: &'a str,
    pub seq: i64,
}

impl<'a> Checkpoint<'a> {
    /// The position's checkpoint; a `seq` past `i64::MAX` (the databases' bigint) is refused.
    pub fn of(position: &'a crate::Position) -> Result<Self, SinkError> {
        let seq = i64::try_from(position.seq).map_err(|_| {
            SinkError::Config(format!(
                "position {} of stream {:?} does not fit a bigint",
                position.seq, position.stream
            ))
        })?;
        Ok(Checkpoint { stream: &position.stream, seq })
    }
}

/// What one transaction of a batch writes: its records grouped by table, and the checkpoint
/// of the stream it ends, if any.
pub(crate) struct Plan<'a> {
    pub groups: Vec<Group>,
    pub checkpoint: Option<Checkpoint<'a>>,
}

/// The records a database refused on their own ([`BatchWriter::write_each`]), with its error.
pub(crate) type Refused<E> = Vec<(usize, E)>;

/// One write of one batch by a typed SQL sink, over one connection.
pub(crate) trait BatchWriter {
    type Error: DbError;
    /// Brings the schema up to the batch ([`prepare`]) and groups its records.
    async fn prepare(
        &mut self,
        batch: &[Record],
        rejected: &mut Vec<Rejected>,
    ) -> Result<Vec<Group>, SinkError>;
    /// Writes every group, and the checkpoint if any, in one transaction.
    async fn write_groups(&mut self, batch: &[Record], plan: &Plan<'_>) -> Result<(), Self::Error>;
    /// Writes every record of the groups on its own, all in one transaction with the
    /// checkpoint: a record the database refuses is rolled back alone (a savepoint) and
    /// returned with the error; an error [`DbError::is_transient`] rolls back everything and is
    /// returned as `Err`.
    async fn write_each(
        &mut self,
        batch: &[Record],
        plan: &Plan<'_>,
    ) -> Result<Refused<Self::Error>, Self::Error>;
    /// The stream's stored checkpoint; creates [`crate::CHECKPOINT_TABLE`] if it is missing.
    async fn committed(&mut self, stream: &str) -> Result<Option<i64>, Self::Error>;
    /// Drops the cached schema (another writer may have changed it).
    fn forget_schema(&mut self);
}

/// The write path every typed SQL sink shares: prepare, write in one transaction; if the
/// database refuses the batch for its data, read the schema again and retry once (another
/// writer may have changed a table); if it still refuses, write record by record (still in one
/// transaction) so that only the records at fault are rejected. Transient errors fail the
/// whole batch, to be retried; nothing of it is stored then. `checkpoint`, if any, is
/// committed with the rows ([`crate::replay::write_batch_at`]).
pub(crate) async fn write_batch<W: BatchWriter>(
    w: &mut W,
    batch: &[Record],
    kind: &str,
    checkpoint: Option<Checkpoint<'_>>,
) -> Result<WriteOutcome, SinkError> {
    let unavailable = |e: &W::Error| SinkError::Unavailable(format!("{kind} sink: {}", e.describe()));
    let mut outcome = WriteOutcome::default();
    if batch.is_empty() && checkpoint.is_none() {
        return Ok(outcome);
    }
    for attempt in 0..2 {
        let mut rejected = Vec::new();
        let groups = match w.prepare(batch, &mut rejected).await {
            Ok(g) => g,
            Err(e) => {
                w.forget_schema();
                return Err(e);
            }
        };
        let plan = Plan { groups, checkpoint };
        let e = match w.write_groups(batch, &plan).await {
            Ok(()) => {
                outcome.written = plan.groups.iter().map(|g| g.records.len()).sum();
                outcome.rejected = rejected;
                return Ok(outcome);
            }
            Err(e) => e,
        };
        w.forget_schema();
        if e.is_transient() {
            return Err(unavailable(&e));
        }
        tracing::debug!(sink = kind, attempt, error = %e.describe(), "batch refused");
        if attempt == 1 {
            let refused = w.write_each(batch, &plan).await.map_err(|e| unavailable(&e))?;
            outcome.written = plan.groups.iter().map(|g| g.records.len()).sum::<usize>() - refused.len();
            outcome.rejected = rejected;
            outcome
                .rejected
                .extend(refused.into_iter().map(|(index, e)| Rejected { index, reason: e.describe() }));
            outcome.rejected.sort_by_key(|r| r.index);
        }
    }
    Ok(outcome)
}

/// Notes a column change the database refused for good (the records that need the column are
/// refused with its reason); passes on other errors.
fn note_refusal(
    result: Result<(), SinkError>,
    column: &str,
    refused: &mut HashMap<String, String>,
) -> Result<(), SinkError> {
    match result {
        Err(SinkError::Config(reason)) => {
            refused.insert(column.to_ascii_lowercase(), reason);
            Ok(())
        }
        other => other,
    }
}

async fn reload<C: Catalog>(catalog: &mut C, table: &str) -> Result<Layout, SinkError> {
    catalog.load(table).await?.ok_or_else(|| SinkError::Unavailable(format!("table {table:?} disappeared")))
}

/// Splits `rows` into consecutive chunks for multi-row statements: each holds at most
/// `max_params` bound values (`columns` per row) and, by `row_bytes`' estimate, at most
/// `max_bytes` (a chunk always holds at least one row).
pub fn chunk_rows(
    rows: &[usize],
    columns: usize,
    max_params: usize,
    max_bytes: usize,
    row_bytes: impl Fn(usize) -> usize,
) -> Vec<std::ops::Range<usize>> {
    let per = (max_params / columns.max(1)).max(1);
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (n, &row) in rows.iter().enumerate() {
        let size = row_bytes(row);
        if n > start && (n - start >= per || bytes + size > max_bytes) {
            chunks.push(start..n);
            (start, bytes) = (n, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        chunks.push(start..rows.len());
    }
    chunks
}

/// A generous estimate of a record's size on the wire, in bytes.
pub fn record_bytes(r: &Record) -> usize {
    let text = |s: &str| s.len() + 8;
    let fields: usize =
        r.fields.values().map(|v| if let FieldValue::Str(s) = v { text(s) } else { 16 }).sum();
    let tags: usize = r.tags.values().map(|t| text(t)).sum();
    16 + text(&r.device) + fields + tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(
            "env".into(),
            vec![
                ("room".into(), ColType::Text),
                ("n".into(), ColType::BigInt),
                ("t".into(), ColType::Double),
                ("ok".into(), ColType::Boolean),
            ],
        )
    }

    #[test]
    fn cells_follow_the_schema_policy() {
        let mut r = Record::new("env", "d", 0);
        r.tags.insert("Room".into(), "k".into());
        r.fields.insert("n".into(), FieldValue::Int(3));
        r.fields.insert("t".into(), FieldValue::Int(2));
        let mut cells = Vec::new();
        layout().cells(&r, &mut cells).unwrap();
        assert_eq!(cells, [Cell::Text("k"), Cell::Int(3), Cell::Float(2.0), Cell::Null]);

        let mut r = r.clone();
        r.fields.insert("ok".into(), FieldValue::Str("yes".into()));
        let mut cells = Vec::new();
        let err = layout().cells(&r, &mut cells).unwrap_err();
        assert_eq!(err, "field \"ok\" is string but its column is boolean");
        let mut r = Record::new("env", "d", 0);
        r.fields.insert("room".into(), FieldValue::Int(1));
        assert!(layout().cells(&r, &mut cells).is_err());
    }

    #[test]
    fn chunks_respect_the_parameter_and_byte_limits() {
        let rows: Vec<usize> = (0..10).collect();
        assert_eq!(chunk_rows(&rows, 3, 9, usize::MAX, |_| 1), [0..3, 3..6, 6..9, 9..10]);
        assert!(chunk_rows(&[], 3, 9, usize::MAX, |_| 1).is_empty());
        assert_eq!(chunk_rows(&rows[..5], 100, 9, usize::MAX, |_| 1).len(), 5);
        // Bytes: rows of 40 bytes under a 100-byte cap go two by two; an oversized row alone.
        assert_eq!(chunk_rows(&rows[..5], 1, 1000, 100, |_| 40), [0..2, 2..4, 4..5]);
        assert_eq!(
            chunk_rows(&rows[..3], 1, 1000, 100, |r| if r == 1 { 500 } else { 10 }),
            [0..1, 1..2, 2..3]
        );
    }
}
