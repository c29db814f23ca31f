//! The `Sink` impl for SQLite: a connection used from blocking threads, a cached schema, one
//! transaction per batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use roost_core::{FieldValue, Record};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::config::{SqliteConfig, Synchronous};
use super::schema::{self, quote, Table, DEVICE, TIME};
use crate::{
    OpenSink, Position, Rejected, Sink, SinkConfig, SinkContext, SinkError, WriteOutcome, CHECKPOINT_TABLE,
};

/// Writes batches to one SQLite file.
pub struct SqliteSink {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    conn: Connection,
    /// Lower-cased table name -> its layout, as last read or written by this sink.
    tables: HashMap<String, Table>,
    /// The `max_columns` option.
    max_columns: usize,
}

#[async_trait]
impl OpenSink for SqliteSink {
    type Config = SqliteConfig;

    /// Opens (creating if needed) the database file and sets WAL mode.
    async fn open(config: SqliteConfig, _kind: &'static str, ctx: &SinkContext) -> Result<Self, SinkError> {
        config.validate()?;
        let file = config.file(ctx);
        let inner = tokio::task::spawn_blocking(move || -> Result<Inner, SinkError> {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    SinkError::Config(format!("sqlite sink: creating {}: {e}", dir.display()))
                })?;
            }
            let conn = Connection::open(&file)
                .map_err(|e| SinkError::Config(format!("sqlite sink: opening {}: {e}", file.display())))?;
            conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms)).map_err(unavailable)?;
            let mode: String =
                conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(unavailable)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(SinkError::Config(format!(
                    "sqlite sink: {} cannot use WAL mode (got {mode})",
                    file.display()
                )));
            }
            let sync = match config.synchronous {
                Synchronous::Off => "OFF",
                Synchronous::Normal => "NORMAL",
                Synchronous::Full => "FULL",
            };
            conn.execute_batch(&format!("PRAGMA synchronous={sync}")).map_err(unavailable)?;
            conn.set_prepared_statement_cache_capacity(256);
            Ok(Inner { conn, tables: HashMap::new(), max_columns: config.max_columns })
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("sqlite sink: open task failed: {e}")))??;
        Ok(SqliteSink { inner: Arc::new(Mutex::new(inner)) })
    }
}

#[async_trait]
impl Sink for SqliteSink {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn write(&mut self, batch: Arc<Vec<Record>>) -> Result<WriteOutcome, SinkError> {
        self.run(move |inner| inner.write(&batch, None)).await
    }

    /// Writes the batch and the position's checkpoint in one transaction; a `seq` at or below
    /// the stored one writes nothing. The records refused alone roll back their own statement
    /// only, so every path commits the rows and the checkpoint together.
    async fn write_at(
        &mut self,
        batch: Arc<Vec<Record>>,
        position: &Position,
    ) -> Result<WriteOutcome, SinkError> {
        let seq = checkpoint_seq(position)?;
        let stream = position.stream.clone();
        self.run(move |inner| inner.write(&batch, Some((&stream, seq)))).await
    }

    async fn committed(&mut self, stream: &str) -> Result<Option<u64>, SinkError> {
        let stream = stream.to_owned();
        self.run(move |inner| {
            let tx = inner.conn.transaction().map_err(unavailable)?;
            let seq = stored_checkpoint(&tx, &stream)?;
            tx.commit().map_err(unavailable)?;
            Ok(seq.map(|s| s as u64))
        })
        .await
    }

    fn replay_safety(&self) -> &'static str {
        "checkpoint"
    }
}

impl SqliteSink {
    /// Runs `f` on the connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let result = f(&mut inner);
            if result.is_err() {
                // The transaction rolled back: columns it added may be gone again.
                inner.tables.clear();
            }
            result
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("sqlite sink: write task failed: {e}")))?
    }
}

/// A position's `seq` as SQLite's integer.
fn checkpoint_seq(position: &Position) -> Result<i64, SinkError> {
    i64::try_from(position.seq).map_err(|_| {
        SinkError::Config(format!(
            "position {} of stream {:?} does not fit an integer",
            position.seq, position.stream
        ))
    })
}

/// The stream's stored checkpoint; creates the table if it is missing (DDL is transactional
/// in SQLite: inside a batch's transaction, it commits with the batch).
fn stored_checkpoint(tx: &rusqlite::Transaction<'_>, stream: &str) -> Result<Option<i64>, SinkError> {
    let table = quote(CHECKPOINT_TABLE);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated_at TEXT NOT NULL)"
    ))
    .map_err(ddl_error)?;
    tx.query_row(&format!("SELECT seq FROM {table} WHERE stream = ?1"), [stream], |r| r.get(0))
        .optional()
        .map_err(unavailable)
}

impl Inner {
    /// Writes the batch in one transaction, with the checkpoint `(stream, seq)` if any.
    fn write(
        &mut self,
        batch: &[Record],
        checkpoint: Option<(&str, i64)>,
    ) -> Result<WriteOutcome, SinkError> {
        let mut outcome = WriteOutcome::default();
        if batch.is_empty() && checkpoint.is_none() {
            return Ok(outcome);
        }
        // IMMEDIATE takes the write lock up front, so a second writer waits (busy_timeout)
        // instead of failing when its read snapshot cannot be upgraded.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
        if let Some((stream, seq)) = checkpoint {
            if stored_checkpoint(&tx, stream)?.is_some_and(|stored| stored >= seq) {
                tracing::debug!(sink = "sqlite", stream, seq, "batch already written");
                return Ok(outcome);
            }
        }
        let mut values: Vec<ToSqlOutput<'_>> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            if let Err(reason) = schema::check_record(record) {
                outcome.rejected.push(Rejected { index, reason });
                continue;
            }
            let table = match ensure_table(&tx, &mut self.tables, record, self.max_columns) {
                Ok(t) => t,
                // A table Roost cannot write (not created by it), a schema change the database
                // refuses or one past max_columns: refuse the record only.
                Err(SinkError::Config(reason)) => {
                    outcome.rejected.push(Rejected { index, reason });
                    continue;
                }
                Err(e) => return Err(e),
            };
            values.clear();
            values.resize(table.columns.len(), ToSqlOutput::Borrowed(ValueRef::Null));
            values[0] = ToSqlOutput::Borrowed(ValueRef::Integer(record.time));
            values[1] = ToSqlOutput::Borrowed(ValueRef::Text(record.device.as_bytes()));
            for (name, tag) in &record.tags {
                values[column(table, name)] = ToSqlOutput::Borrowed(ValueRef::Text(tag.as_bytes()));
            }
            for (name, field) in &record.fields {
                values[column(table, name)] = ToSqlOutput::Borrowed(match field {
                    FieldValue::Int(i) => ValueRef::Integer(*i),
                    FieldValue::Float(f) => ValueRef::Real(*f),
                    FieldValue::Bool(b) => ValueRef::Integer(i64::from(*b)),
                    FieldValue::Str(s) => ValueRef::Text(s.as_bytes()),
                });
            }
            let mut stmt = tx.prepare_cached(&table.insert_sql).map_err(unavailable)?;
            match stmt.execute(rusqlite::params_from_iter(values.iter())) {
                Ok(_) => outcome.written += 1,
                Err(e) if is_transient(&e) => return Err(unavailable(e)),
                // A statement error rolls back that statement only; the batch goes on.
                Err(e) => outcome.rejected.push(Rejected { index, reason: e.to_string() }),
            }
        }
        if let Some((stream, seq)) = checkpoint {
            tx.execute(
                &format!(
                    "INSERT INTO {} (stream, seq, updated_at) VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
                     ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
                    quote(CHECKPOINT_TABLE)
                ),
                rusqlite::params![stream, seq],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        Ok(outcome)
    }
}

/// The position of `name`'s column; [`ensure_table`] has made sure it exists.
fn column(table: &Table, name: &str) -> usize {
    table.index[&name.to_ascii_lowercase()]
}

/// Creates the record's table and any missing columns, and returns the table's layout. A
/// schema change the database refuses for good (a name clash, too many columns) or one past
/// `max_columns` is a [`SinkError::Config`] that refuses the record.
fn ensure_table<'t>(
    tx: &rusqlite::Transaction<'_>,
    tables: &'t mut HashMap<String, Table>,
    record: &Record,
    max_columns: usize,
) -> Result<&'t Table, SinkError> {
    let key = record.measurement.to_ascii_lowercase();
    let known = tables.get(&key).is_some_and(|t| t.missing(record).is_empty());
    if !known {
        let mut table = match tables.remove(&key) {
            Some(t) => t,
            None => load_or_create(tx, &record.measurement)?,
        };
        let missing: Vec<(String, &str)> =
            table.missing(record).into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
        let width = table.columns.len() + missing.len();
        if width > max_columns {
            let reason = crate::sql::column_cap_reason(&table.name, width, max_columns);
            tables.insert(key, table);
            return Err(SinkError::Config(reason));
        }
        if !missing.is_empty() {
            let mut columns = table.columns.clone();
            for (name, ty) in missing {
                let sql = format!("ALTER TABLE {} ADD COLUMN {} {ty}", quote(&table.name), quote(&name));
                match tx.execute_batch(&sql) {
                    Ok(()) => columns.push(name),
                    // Another writer added it since we last looked: read the table again.
                    Err(e) if e.to_string().contains("duplicate column") => {
                        columns = read_columns(tx, &table.name)?;
                    }
                    Err(e) => return Err(ddl_error(e)),
                }
            }
            table = Table::new(table.name, columns);
        }
        tables.insert(key.clone(), table);
    }
    Ok(&tables[&key])
}

/// Reads an existing table's layout, or creates the table.
fn load_or_create(tx: &rusqlite::Transaction<'_>, measurement: &str) -> Result<Table, SinkError> {
    let existing: Option<String> = tx
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [measurement],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    let name = match existing {
        Some(name) => name,
        None => {
            let q = quote(measurement);
            // A name no measurement can take ([`crate::names::index_name`]). Tables created
            // before keep their old `<measurement>_device_time` index.
            let index = quote(&crate::names::index_name(measurement, 63));
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {q} ({} INTEGER NOT NULL, {} TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS {index} ON {q} ({}, {});",
                quote(TIME),
                quote(DEVICE),
                quote(DEVICE),
                quote(TIME),
            ))
            .map_err(ddl_error)?;
            measurement.to_owned()
        }
    };
    let columns = read_columns(tx, &name)?;
    Ok(Table::new(name, columns))
}

fn read_columns(tx: &rusqlite::Transaction<'_>, table: &str) -> Result<Vec<String>, SinkError> {
    let mut stmt = tx.prepare("SELECT name FROM pragma_table_info(?1)").map_err(unavailable)?;
    let columns = stmt
        .query_map([table], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    let lower: Vec<String> = columns.iter().map(|c| c.to_ascii_lowercase()).collect();
    if lower.first().map(String::as_str) != Some(TIME) || lower.get(1).map(String::as_str) != Some(DEVICE) {
        return Err(SinkError::Config(format!(
            "sqlite sink: table {table:?} exists but does not start with (time, device) columns; \
             it was not created by Roost"
        )));
    }
    Ok(columns)
}

fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::OutOfMemory
        )
    )
}

/// A DDL statement's error: worth retrying, or refused for good (a name another table's index
/// holds, too many columns), which refuses the record that needs it.
fn ddl_error(e: rusqlite::Error) -> SinkError {
    if is_transient(&e) {
        unavailable(e)
    } else {
        SinkError::Config(format!("sqlite sink: {e}"))
    }
}

fn unavailable(e: rusqlite::Error) -> SinkError {
    SinkError::Unavailable(format!("sqlite sink: {e}"))
}
