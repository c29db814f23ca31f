//! Reading a SQLite sink's file back (`roost export`): tables that start with `time, device`
//! are measurements; rows are read on a blocking thread, ordered by time, and handed over in
//! pages through a bounded channel, so memory stays constant however large the table is.
//!
//! SQLite keeps each value's own type: integers, floats and text read back as they were
//! written. Booleans are stored as 0/1 in columns declared `BOOLEAN` (the sink declares them
//! so) and read back as booleans; tables made before that declared them `INTEGER`, and their
//! booleans read back as integers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use roost_core::FieldValue;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::config::SqliteConfig;
use super::schema::{quote, DEVICE, TIME};
use crate::export::{batched, Cursor, ExportError, OpenSource, Precision, Query, Row, Rows, Source};
use crate::{SinkConfig, SinkContext, CHECKPOINT_TABLE};

/// Rows per page handed from the reading thread.
const PAGE: usize = 1024;

/// Reads one SQLite file.
pub struct SqliteSource {
    file: PathBuf,
    busy_timeout: Duration,
}

#[async_trait]
impl OpenSource for SqliteConfig {
    async fn open_source(
        &self,
        _kind: &'static str,
        ctx: &SinkContext,
    ) -> Result<Box<dyn Source>, ExportError> {
        self.validate().map_err(|e| ExportError::Config(e.to_string()))?;
        let source =
            SqliteSource { file: self.file(ctx), busy_timeout: Duration::from_millis(self.busy_timeout_ms) };
        // Fails now, with the reason, if the file is missing or not a database.
        source.blocking(|conn| tables(conn).map(drop)).await?;
        Ok(Box::new(source))
    }
}

impl SqliteSource {
    /// Opens the file without creating it: a missing file is an error, not a new database.
    fn connect(&self) -> Result<Connection, ExportError> {
        if !self.file.is_file() {
            return Err(ExportError::Config(format!(
                "sqlite sink: the database file {} does not exist; check --data-dir and the sink's path \
                 (roost creates it on its first write)",
                self.file.display()
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.file, flags)
            .map_err(|e| ExportError::Config(format!("sqlite sink: opening {}: {e}", self.file.display())))?;
        conn.busy_timeout(self.busy_timeout).map_err(unavailable)?;
        // A reader never writes, whatever it runs.
        conn.execute_batch("PRAGMA query_only = ON").map_err(unavailable)?;
        Ok(conn)
    }

    /// Runs `f` on a fresh connection on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ExportError> + Send + 'static,
    ) -> Result<T, ExportError> {
        let this = SqliteSource { file: self.file.clone(), busy_timeout: self.busy_timeout };
        tokio::task::spawn_blocking(move || f(&this.connect()?))
            .await
            .map_err(|e| ExportError::Unavailable(format!("sqlite sink: read task failed: {e}")))?
    }
}

/// The tables Roost made: every table whose first columns are `time` and `device`, sorted.
fn tables(conn: &Connection) -> Result<Vec<String>, ExportError> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY name",
        )
        .map_err(unavailable)?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for name in names {
        if name == CHECKPOINT_TABLE {
            continue;
        }
        let columns = columns(conn, &name)?;
        let lower = |i: usize| columns.get(i).map(|(c, _)| c.to_ascii_lowercase());
        if lower(0).as_deref() == Some(TIME) && lower(1).as_deref() == Some(DEVICE) {
            out.push(name);
        }
    }
    Ok(out)
}

/// A table's columns with their declared types.
fn columns(conn: &Connection, table: &str) -> Result<Vec<(String, String)>, ExportError> {
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1)").map_err(unavailable)?;
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(unavailable)
}

#[async_trait]
impl Source for SqliteSource {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn precision(&self) -> Precision {
        Precision::Nanos
    }

    async fn measurements(&mut self) -> Result<Vec<String>, ExportError> {
        self.blocking(tables).await
    }

    async fn columns(&mut self, measurement: &str, _query: &Query) -> Result<Vec<String>, ExportError> {
        let table = measurement.to_owned();
        let columns = self.blocking(move |conn| columns(conn, &table)).await?;
        Ok(columns.into_iter().skip(2).map(|(name, _)| name).collect())
    }

    async fn rows<'a>(&'a mut self, measurement: &str, query: &Query) -> Result<Rows<'a>, ExportError> {
        let (tx, rx) = mpsc::channel::<Result<Vec<Row>, ExportError>>(2);
        let this = SqliteSource { file: self.file.clone(), busy_timeout: self.busy_timeout };
        let (table, query) = (measurement.to_owned(), query.clone());
        tokio::task::spawn_blocking(move || {
            let result = this.connect().and_then(|conn| read(&conn, &table, &query, &tx));
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(batched(Pages(rx)))
    }
}

/// The pages the reading thread sends.
struct Pages(mpsc::Receiver<Result<Vec<Row>, ExportError>>);

#[async_trait]
impl Cursor for Pages {
    async fn next_batch(&mut self) -> Result<Option<Vec<Row>>, ExportError> {
        self.0.recv().await.transpose()
    }
}

/// Reads the table's matching rows in time order and sends them in pages; stops early when
/// the receiver is gone.
fn read(
    conn: &Connection,
    table: &str,
    query: &Query,
    tx: &mpsc::Sender<Result<Vec<Row>, ExportError>>,
) -> Result<(), ExportError> {
    let cols = columns(conn, table)?;
    let names: Vec<Arc<str>> = cols.iter().skip(2).map(|(n, _)| Arc::from(n.as_str())).collect();
    let boolean: Vec<bool> = cols.iter().skip(2).map(|(_, t)| t.eq_ignore_ascii_case("BOOLEAN")).collect();
    let list: Vec<String> = cols.iter().map(|(n, _)| quote(n)).collect();
    let mut sql = format!("SELECT {} FROM {} WHERE 1 = 1", list.join(", "), quote(table));
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(from) = query.from {
        params.push(from.into());
        sql.push_str(&format!(" AND {} >= ?{}", quote(TIME), params.len()));
    }
    if let Some(to) = query.to {
        params.push(to.into());
        sql.push_str(&format!(" AND {} < ?{}", quote(TIME), params.len()));
    }
    if !query.devices.is_empty() {
        let mut marks = Vec::new();
        for d in &query.devices {
            params.push(d.clone().into());
            marks.push(format!("?{}", params.len()));
        }
        sql.push_str(&format!(" AND {} IN ({})", quote(DEVICE), marks.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY {}, {}", quote(TIME), quote(DEVICE)));
    let mut stmt = conn.prepare(&sql).map_err(unavailable)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter())).map_err(unavailable)?;
    let mut page = Vec::with_capacity(PAGE);
    while let Some(r) = rows.next().map_err(unavailable)? {
        let time = match r.get_ref(0).map_err(unavailable)? {
            ValueRef::Integer(t) => t,
            ValueRef::Real(t) => t as i64,
            other => {
                return Err(ExportError::Unavailable(format!(
                    "sqlite sink: table {table:?} holds a time that is not a number ({:?})",
                    other.data_type()
                )))
            }
        };
        let device = match r.get_ref(1).map_err(unavailable)? {
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            ValueRef::Integer(i) => i.to_string(),
            _ => String::new(),
        };
        let mut values = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let value = match r.get_ref(i + 2).map_err(unavailable)? {
                ValueRef::Null => continue,
                ValueRef::Integer(v) if boolean[i] && (v == 0 || v == 1) => FieldValue::Bool(v == 1),
                ValueRef::Integer(v) => FieldValue::Int(v),
                ValueRef::Real(v) => FieldValue::Float(v),
                ValueRef::Text(t) => FieldValue::Str(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => FieldValue::Str(String::from_utf8_lossy(b).into_owned()),
            };
            values.push((name.clone(), value));
        }
        page.push(Row { time, device, values });
        if page.len() == PAGE
            && tx.blocking_send(Ok(std::mem::replace(&mut page, Vec::with_capacity(PAGE)))).is_err()
        {
            return Ok(());
        }
    }
    if !page.is_empty() {
        let _ = tx.blocking_send(Ok(page));
    }
    Ok(())
}

fn unavailable(e: rusqlite::Error) -> ExportError {
    ExportError::Unavailable(format!("sqlite sink: {e}"))
}
