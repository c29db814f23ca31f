//! The dead-letter store: what Roost could not write or process, kept with the reason so that
//! nothing is lost silently, and so that it can be replayed once the cause is fixed.
//!
//! - Records a database refused for good (an invalid name, a type conflict), and records a sink
//!   gave up on at a stop deadline, are kept as records with their sink's name.
//! - Messages a pipeline could not map are kept as messages (topic, client, payload) with the
//!   pipeline's name.
//!
//! The store is a SQLite file of its own (`<data_dir>/deadletter.db`), apart from every sink, so a
//! failing database cannot take its dead letters with it. Letters reach it through a bounded
//! mailbox: a writer waits for room rather than dropping a letter. Past the `[deadletter]`
//! bounds (entries, bytes, letters per device) the oldest message letters are evicted and
//! counted; records are never evicted ([`evict`]).
//! [`api`] lists, replays and deletes entries; [`cli`] is `roost deadletter ...`.

pub mod api;
pub mod cli;
mod evict;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roost_core::{envelope, Message, Record};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

/// `[deadletter]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterSettings {
    /// Entries kept; beyond this the oldest message letters are deleted (counted as dropped).
    pub max_entries: u64,
    /// Bytes kept (payloads, records, topics and reasons); beyond this likewise.
    pub max_bytes: u64,
    /// Message letters kept per device (or client id, for a message with no device); beyond
    /// this the device's own oldest are deleted.
    pub max_per_device: u64,
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings { max_entries: 100_000, max_bytes: 256 << 20, max_per_device: 10_000 }
    }
}

impl DeadLetterSettings {
    fn limits(&self) -> evict::Limits {
        evict::Limits {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            max_per_device: self.max_per_device,
        }
    }
}

/// Letters queued for the store before writers wait for room.
const MAILBOX: usize = 10_000;

#[derive(Debug, Error)]
pub enum DeadLetterError {
    #[error("dead-letter store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("dead-letter store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("dead-letter store: entry {id} is unreadable: {reason}")]
    Corrupt { id: i64, reason: String },
}

/// What is being put aside, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Letter {
    Record { sink: String, reason: String, record: Record },
    Message { pipeline: String, reason: String, message: Message },
}

/// A stored entry, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: i64,
    /// When it was put aside, ns since the epoch.
    pub at: i64,
    /// `sink:<name>` or `pipeline:<name>`.
    pub source: String,
    pub reason: String,
    /// For a record: the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// For a message: its topic, client id, and payload (text if it is UTF-8, else base64 in
    /// `payload_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

/// Counters for `/metrics` and the status.
#[derive(Debug, Default)]
pub struct DeadLetterStats {
    /// Letters written to the store.
    pub stored: AtomicU64,
    /// Letters lost: the store failed, or message letters evicted past the bounds.
    pub dropped: AtomicU64,
    /// Set while the store is over its bounds because only `sink:` letters are left, which are
    /// never evicted.
    pub over_bounds: AtomicBool,
    /// Entries replayed into their sink or pipeline.
    pub replayed: AtomicU64,
}

enum Command {
    Put(Letter),
    Flush(oneshot::Sender<()>),
}

/// The handle every actor holds: cheap to clone; `put` waits while the store catches up.
#[derive(Clone)]
pub struct DeadLetters {
    tx: mpsc::Sender<Command>,
    db: Arc<Mutex<Connection>>,
    pub stats: Arc<DeadLetterStats>,
}

/// Filters for listing, replaying and deleting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only these entries.
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Only entries from this source (`sink:<name>`, `pipeline:<name>`).
    #[serde(default)]
    pub source: Option<String>,
}

impl DeadLetters {
    /// Opens (creating) the store in `data_dir` and starts its writer task.
    pub fn open(data_dir: &Path, settings: &DeadLetterSettings) -> Result<DeadLetters, DeadLetterError> {
        let path = data_dir.join("deadletter.db");
        let open_err = |source| DeadLetterError::Open { path: path.display().to_string(), source };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS dead_letters (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at INTEGER NOT NULL,
                 source TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 record TEXT,
                 topic TEXT,
                 client_id TEXT,
                 device TEXT,
                 payload BLOB,
                 received_at INTEGER,
                 qos INTEGER,
                 retain INTEGER
             );
             CREATE INDEX IF NOT EXISTS dead_letters_source ON dead_letters (source, id);",
        )
        .map_err(open_err)?;
        add_bounds_columns(&conn).map_err(open_err)?;
        let (tx, rx) = mpsc::channel(MAILBOX);
        let store = DeadLetters { tx, db: Arc::new(Mutex::new(conn)), stats: Arc::default() };
        tokio::spawn(writer(rx, store.db.clone(), store.stats.clone(), settings.limits()));
        Ok(store)
    }

    /// Puts a letter aside, waiting for room if the store is behind (backpressure, never a
    /// drop). Only if the writer task is gone is the letter counted as dropped.
    pub async fn put(&self, letter: Letter) {
        if self.tx.send(Command::Put(letter)).await.is_err() {
            self.stats.dropped.fetch_add(1, Relaxed);
            error!("dead-letter store stopped: letter dropped");
        }
    }

    /// Waits until every letter put so far is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries in the store.
    pub fn count(&self) -> Result<u64, DeadLetterError> {
        let n: i64 = self.lock().query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Entries matching `sel`, oldest first, at most `limit`, with ids above `after`.
    pub fn list(&self, sel: &Selection, after: i64, limit: usize) -> Result<Vec<Entry>, DeadLetterError> {
        self.select("at, source, reason, record, topic, client_id, payload", sel, after, limit, |id, r| {
            let record = match r.get::<_, Option<String>>(4)? {
                Some(json) => Some(
                    serde_json::from_str(&json)
                        .map_err(|e| DeadLetterError::Corrupt { id, reason: e.to_string() })?,
                ),
                None => None,
            };
            let payload: Option<Vec<u8>> = r.get(7)?;
            let (payload, payload_base64) = match payload {
                None => (None, None),
                Some(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => (Some(text), None),
                    Err(e) => (None, Some(base64(e.as_bytes()))),
                },
            };
            Ok(Entry {
                id,
                at: r.get(1)?,
                source: r.get(2)?,
                reason: r.get(3)?,
                record,
                topic: r.get(5)?,
                client_id: r.get(6)?,
                payload,
                payload_base64,
            })
        })
    }

    /// The letters of the entries matching `sel` (oldest first, at most `limit`), with their ids.
    pub fn letters(&self, sel: &Selection, limit: usize) -> Result<Vec<(i64, Letter)>, DeadLetterError> {
        let columns = "source, reason, record, topic, client_id, device, payload, received_at, qos, retain";
        self.select(columns, sel, 0, limit, |id, r| {
            let source: String = r.get(1)?;
            let reason: String = r.get(2)?;
            let corrupt = |reason: String| DeadLetterError::Corrupt { id, reason };
            let letter = match source.split_once(':') {
                Some(("sink", sink)) => {
                    let json: String =
                        r.get::<_, Option<String>>(3)?.ok_or_else(|| corrupt("no record".into()))?;
                    let record = serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?;
                    Letter::Record { sink: sink.to_owned(), reason, record }
                }
                Some(("pipeline", pipeline)) => Letter::Message {
                    pipeline: pipeline.to_owned(),
                    reason,
                    message: Message {
                        topic: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        client_id: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                        device: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        payload: r.get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default(),
                        received_at: r.get::<_, Option<i64>>(8)?.unwrap_or_default(),
                        qos: r.get::<_, Option<i64>>(9)?.unwrap_or(1) as u8,
                        retain: r.get::<_, Option<bool>>(10)?.unwrap_or(false),
                        user_properties: Vec::new(),
                    },
                },
                _ => return Err(corrupt(format!("unknown source {source:?}"))),
            };
            Ok((id, letter))
        })
    }

    /// `id` and `columns` of the entries matching `sel` (oldest first, ids above `after`, at
    /// most `limit`), each row made into a `T` by `row` (column 0 is the id).
    fn select<T>(
        &self,
        columns: &str,
        sel: &Selection,
        after: i64,
        limit: usize,
        mut row: impl FnMut(i64, &rusqlite::Row<'_>) -> Result<T, DeadLetterError>,
    ) -> Result<Vec<T>, DeadLetterError> {
        let (clause, values) = filter(sel, after, limit);
        let sql = format!("SELECT id, {columns} FROM dead_letters {clause}");
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(values))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(row(r.get(0)?, r)?);
        }
        Ok(out)
    }

    /// Deletes entries by id; returns how many were deleted.
    pub fn delete_ids(&self, ids: &[i64]) -> Result<usize, DeadLetterError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
            for id in ids {
                n += stmt.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Deletes the entries matching `sel` (everything for an empty selection).
    pub fn delete(&self, sel: &Selection) -> Result<usize, DeadLetterError> {
        let (clause, values) = filter(sel, 0, usize::MAX);
        let sql = format!("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters {clause})");
        Ok(self.lock().execute(&sql, params_from_iter(values))?)
    }
}

/// `WHERE ... ORDER BY id LIMIT ?` for a selection, with its parameters in order.
fn filter(sel: &Selection, after: i64, limit: usize) -> (String, Vec<SqlValue>) {
    let mut clause = String::from("WHERE id > ?");
    let mut values = vec![SqlValue::Integer(after)];
    if let Some(source) = &sel.source {
        clause.push_str(" AND source = ?");
        values.push(SqlValue::Text(source.clone()));
    }
    if !sel.ids.is_empty() {
        clause.push_str(" AND id IN (SELECT value FROM json_each(?))");
        values.push(SqlValue::Text(serde_json::to_string(&sel.ids).unwrap_or_else(|_| "[]".into())));
    }
    clause.push_str(" ORDER BY id LIMIT ?");
    values.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    (clause, values)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `owner` (the device, or client id, of a message letter; NULL for a record) and `size` (bytes
/// counted against `max_bytes`), added to a store made before they existed.
fn add_bounds_columns(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('dead_letters') WHERE name = 'owner'",
        [],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(
            "ALTER TABLE dead_letters ADD COLUMN owner TEXT;
             ALTER TABLE dead_letters ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
             UPDATE dead_letters SET
                 owner = CASE WHEN record IS NULL THEN coalesce(nullif(device, ''), client_id) END,
                 size = length(reason) + coalesce(length(record), 0) + coalesce(length(topic), 0)
                        + coalesce(length(payload), 0);",
        )?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS dead_letters_owner ON dead_letters (owner, id, size);")
}

/// The writer task: writes letters in batches and keeps the store within its bounds.
async fn writer(
    mut rx: mpsc::Receiver<Command>,
    db: Arc<Mutex<Connection>>,
    stats: Arc<DeadLetterStats>,
    limits: evict::Limits,
) {
    let mut commands = Vec::with_capacity(1000);
    while rx.recv_many(&mut commands, 1000).await > 0 {
        let mut letters = Vec::new();
        let mut flushes = Vec::new();
        for c in commands.drain(..) {
            match c {
                Command::Put(l) => letters.push(l),
                Command::Flush(done) => flushes.push(done),
            }
        }
        if !letters.is_empty() {
            let n = letters.len() as u64;
            let db = db.clone();
            let written = tokio::task::spawn_blocking(move || write(&db, &letters, limits)).await;
            match written {
                Ok(Ok(evicted)) => {
                    stats.stored.fetch_add(n, Relaxed);
                    if evicted.deleted > 0 {
                        stats.dropped.fetch_add(evicted.deleted, Relaxed);
                        warn!(
                            evicted = evicted.deleted,
                            ?limits,
                            "dead-letter store full: oldest message letters deleted"
                        );
                    }
                    if evicted.over_bounds && !stats.over_bounds.swap(true, Relaxed) {
                        warn!(
                            ?limits,
                            "dead-letter store over its bounds with only records left: \
                              they are kept; replay or delete them (`roost deadletter`)"
                        );
                    } else if !evicted.over_bounds {
                        stats.over_bounds.store(false, Relaxed);
                    }
                }
                Ok(Err(e)) => {
                    stats.dropped.fetch_add(n, Relaxed);
                    error!(letters = n, error = %e, "dead letters could not be stored");
                }
                Err(e) => {
                    stats.dropped.fetch_add(n, Relaxed);
                    error!(letters = n, error = %e, "dead-letter writer failed");
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn write(
    db: &Mutex<Connection>,
    letters: &[Letter],
    limits: evict::Limits,
) -> Result<evict::Evicted, rusqlite::Error> {
    let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction()?;
    let mut owners = BTreeSet::new();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO dead_letters (at, source, reason, record, topic, client_id, device, payload, received_at, qos, retain, owner, size) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let at = envelope::now_ns();
        for l in letters {
            match l {
                Letter::Record { sink, reason, record } => {
                    let json = serde_json::to_string(record).unwrap_or_default();
                    let source = format!("sink:{sink}");
                    let size = reason.len() + json.len();
                    stmt.execute(params![
                        at,
                        source,
                        reason,
                        json,
                        None::<String>,
                        None::<String>,
                        None::<String>,
                        None::<Vec<u8>>,
                        None::<i64>,
                        None::<i64>,
                        None::<bool>,
                        None::<String>,
                        size as i64
                    ])?;
                }
                Letter::Message { pipeline, reason, message: m } => {
                    let source = format!("pipeline:{pipeline}");
                    let owner = if m.device.is_empty() { &m.client_id } else { &m.device };
                    owners.insert(owner.clone());
                    let size = reason.len() + m.topic.len() + m.payload.len();
                    stmt.execute(params![
                        at,
                        source,
                        reason,
                        None::<String>,
                        m.topic,
                        m.client_id,
                        m.device,
                        m.payload,
                        m.received_at,
                        m.qos,
                        m.retain,
                        owner,
                        size as i64
                    ])?;
                }
            }
        }
    }
    let evicted = evict::evict(&tx, limits, &owners)?;
    tx.commit()?;
    Ok(evicted)
}

#[cfg(test)]
mod tests;
