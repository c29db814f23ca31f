//! The `Sink` impl for MySQL/MariaDB: one transaction per batch, multi-row prepared INSERTs sized
//! under `max_allowed_packet`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, TxOpts, Value};
use roost_core::{FieldValue, Record};

use super::config::MysqlConfig;
use super::schema::{datetime, quote, unavailable, value, MyCatalog};
use crate::replay;
use crate::sql::{
    self, chunk_rows, record_bytes, BatchWriter, Cell, Checkpoint, DbError, Group, Layout, Plan, Refused,
};
use crate::{
    OpenSink, Position, Rejected, Sink, SinkConfig, SinkContext, SinkError, WriteOutcome, CHECKPOINT_TABLE,
};

/// MySQL's limit on placeholders in one prepared statement.
const MAX_PARAMS: usize = 65_535;

/// The longest table name the server keeps, in bytes.
const MAX_NAME: usize = 64;

/// Writes batches to MySQL or MariaDB.
pub struct MysqlSink {
    config: MysqlConfig,
    pool: Pool,
    cache: HashMap<String, Layout>,
    /// The server's `max_allowed_packet`, read on first connection.
    max_packet: Option<usize>,
    /// Whether the checkpoint table is known to exist.
    checkpoints: bool,
}

#[async_trait]
impl OpenSink for MysqlSink {
    type Config = MysqlConfig;

    /// Builds the pool; connecting happens on the first write.
    async fn open(config: MysqlConfig, _kind: &'static str, _ctx: &SinkContext) -> Result<Self, SinkError> {
        config.validate()?;
        let constraints = PoolConstraints::new(0, config.pool_size)
            .ok_or_else(|| SinkError::Config("mysql sink: bad pool_size".into()))?;
        let opts = OptsBuilder::from_opts(config.opts()?)
            .init(vec![
                "SET SESSION time_zone = '+00:00'",
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
            ])
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        Ok(MysqlSink {
            config,
            pool: Pool::new(opts),
            cache: HashMap::new(),
            max_packet: None,
            checkpoints: false,
        })
    }
}

/// What MySQL cannot store: NaN and infinities, devices over 255 characters.
fn check_values(r: &Record) -> Result<(), String> {
    if r.device.chars().count() > 255 {
        return Err("device names over 255 characters do not fit MySQL's device column".into());
    }
    if r.fields.values().any(|v| matches!(v, FieldValue::Float(f) if !f.is_finite())) {
        return Err("MySQL cannot store NaN or infinite values".into());
    }
    Ok(())
}

#[async_trait]
impl Sink for MysqlSink {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn write(&mut self, batch: Arc<Vec<Record>>) -> Result<WriteOutcome, SinkError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let mut w = self.writer().await?;
        sql::write_batch(&mut w, &batch, "mysql", None).await
    }

    /// Writes the batch and the position's checkpoint in one transaction
    /// (`replay::write_batch_at`).
    async fn write_at(
        &mut self,
        batch: Arc<Vec<Record>>,
        position: &Position,
    ) -> Result<WriteOutcome, SinkError> {
        replay::write_batch_at(&mut self.writer().await?, &batch, "mysql", position).await
    }

    async fn committed(&mut self, stream: &str) -> Result<Option<u64>, SinkError> {
        replay::committed(&mut self.writer().await?, "mysql", stream).await
    }

    fn replay_safety(&self) -> &'static str {
        replay::SAFETY
    }
}

impl MysqlSink {
    /// A pooled connection, ready to write a batch.
    async fn writer(&mut self) -> Result<MyWrite<'_>, SinkError> {
        let mut conn = self.pool.get_conn().await.map_err(|e| unavailable(&e))?;
        let max_packet = match self.max_packet {
            Some(m) => m,
            None => {
                let m: Option<u64> =
                    conn.query_first("SELECT @@max_allowed_packet").await.map_err(|e| unavailable(&e))?;
                let m = m.unwrap_or(4 << 20) as usize;
                self.max_packet = Some(m);
                m
            }
        };
        Ok(MyWrite { sink: self, conn, max_packet })
    }
}

/// One batch's write over one pooled connection.
struct MyWrite<'s> {
    sink: &'s mut MysqlSink,
    conn: Conn,
    max_packet: usize,
}

impl BatchWriter for MyWrite<'_> {
    type Error = mysql_async::Error;

    async fn prepare(
        &mut self,
        batch: &[Record],
        rejected: &mut Vec<Rejected>,
    ) -> Result<Vec<Group>, SinkError> {
        let mut catalog = MyCatalog { conn: &mut self.conn };
        let config = &self.sink.config;
        let rules = sql::Rules {
            table_prefix: &config.table_prefix,
            check: check_values,
            max_columns: config.max_columns,
            max_name: MAX_NAME,
        };
        sql::prepare(&mut catalog, &mut self.sink.cache, batch, &rules, rejected).await
    }

    async fn write_groups(&mut self, batch: &[Record], plan: &Plan<'_>) -> Result<(), Self::Error> {
        // Half the packet limit leaves room for the protocol's own framing.
        let max_bytes = self.max_packet / 2;
        let mut tx = self.conn.start_transaction(TxOpts::default()).await?;
        for g in plan.groups.iter().filter(|g| !g.records.is_empty()) {
            let width = g.layout.columns.len() + 2;
            for range in chunk_rows(&g.records, width, MAX_PARAMS, max_bytes, |i| record_bytes(&batch[i])) {
                let (sql, params) = insert(&g.layout, batch, &g.records[range]);
                tx.exec_drop(sql, params).await?;
            }
        }
        store_checkpoint(&mut tx, plan.checkpoint).await?;
        tx.commit().await
    }

    async fn write_each(
        &mut self,
        batch: &[Record],
        plan: &Plan<'_>,
    ) -> Result<Refused<Self::Error>, Self::Error> {
        let mut tx = self.conn.start_transaction(TxOpts::default()).await?;
        let mut refused = Vec::new();
        for g in &plan.groups {
            for &i in &g.records {
                let (sql, params) = insert(&g.layout, batch, &[i]);
                tx.query_drop("SAVEPOINT roost_record").await?;
                match tx.exec_drop(sql, params).await {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        tx.query_drop("ROLLBACK TO SAVEPOINT roost_record").await?;
                        refused.push((i, e));
                    }
                }
            }
        }
        store_checkpoint(&mut tx, plan.checkpoint).await?;
        tx.commit().await?;
        Ok(refused)
    }

    async fn committed(&mut self, stream: &str) -> Result<Option<i64>, Self::Error> {
        if !self.sink.checkpoints {
            // DDL commits implicitly in MySQL: the table is made here, never inside a batch's
            // transaction.
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} (stream VARCHAR(255) NOT NULL PRIMARY KEY, \
                 seq BIGINT NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                quote(CHECKPOINT_TABLE)
            );
            self.conn.query_drop(sql).await?;
            self.sink.checkpoints = true;
        }
        let sql = format!("SELECT seq FROM {} WHERE stream = ?", quote(CHECKPOINT_TABLE));
        self.conn.exec_first(sql, (stream,)).await
    }

    fn forget_schema(&mut self) {
        self.sink.cache.clear();
    }
}

/// Upserts the stream's checkpoint in the batch's transaction.
async fn store_checkpoint(
    tx: &mut mysql_async::Transaction<'_>,
    checkpoint: Option<Checkpoint<'_>>,
) -> Result<(), mysql_async::Error> {
    let Some(c) = checkpoint else { return Ok(()) };
    let sql = format!(
        "INSERT INTO {} (stream, seq, updated_at) VALUES (?, ?, UTC_TIMESTAMP(6)) \
         ON DUPLICATE KEY UPDATE seq = VALUES(seq), updated_at = VALUES(updated_at)",
        quote(CHECKPOINT_TABLE)
    );
    tx.exec_drop(sql, (c.stream, c.seq)).await
}

/// A multi-row INSERT of `records` into the layout's table, with its parameters.
fn insert(layout: &Layout, batch: &[Record], records: &[usize]) -> (String, Params) {
    let width = layout.columns.len() + 2;
    let mut cols = vec!["time".to_owned(), "device".to_owned()];
    cols.extend(layout.columns.iter().map(|(c, _)| quote(c)));
    let row = format!("({})", vec!["?"; width].join(", "));
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote(&layout.table),
        cols.join(", "),
        vec![row; records.len()].join(", ")
    );
    let mut params: Vec<Value> = Vec::with_capacity(records.len() * width);
    let mut cells: Vec<Cell<'_>> = Vec::new();
    for &i in records {
        let r = &batch[i];
        // prepare() checked every record against this layout.
        let _ = layout.cells(r, &mut cells);
        params.push(datetime(r.time));
        params.push(Value::Bytes(r.device.as_bytes().to_vec()));
        params.extend(cells.iter().map(|c| value(*c)));
    }
    (sql, Params::Positional(params))
}
