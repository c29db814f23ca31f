//! The `Sink` impl for PostgreSQL: one transaction per batch, binary COPY or multi-row INSERT
//! per table, and per-record isolation when the database refuses a batch for its data.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use roost_core::Record;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, NoTls};
use tracing::info;

use super::config::{Hypertable, PostgresConfig, WriteMethod};
use super::schema::{pg_type, quote, unavailable, PgCatalog, PgCell, PgTime};
use crate::replay;
use crate::sql::{
    self, chunk_rows, record_bytes, BatchWriter, Cell, Checkpoint, DbError, Group, Layout, Plan, Refused,
};
use crate::{
    OpenSink, Position, Rejected, Sink, SinkConfig, SinkContext, SinkError, WriteOutcome, CHECKPOINT_TABLE,
};

/// PostgreSQL's limit on bound parameters in one statement.
const MAX_PARAMS: usize = 65_535;

/// The longest table name the server keeps, in bytes.
const MAX_NAME: usize = 63;

/// Writes batches to PostgreSQL or TimescaleDB.
pub struct PostgresSink {
    kind: &'static str,
    config: PostgresConfig,
    pool: Pool,
    /// Lower-cased table name -> its layout, as last read or changed by this sink.
    cache: HashMap<String, Layout>,
    /// `Some(schema of the timescaledb extension)` when new tables become hypertables; checked
    /// on first connection.
    timescale: Option<Option<String>>,
    /// Whether the checkpoint table is known to exist.
    checkpoints: bool,
}

#[async_trait]
impl OpenSink for PostgresSink {
    type Config = PostgresConfig;

    /// Builds the pool. Connecting happens on the first write, so Roost starts while the
    /// database is down and the sink catches up when it comes back.
    async fn open(config: PostgresConfig, kind: &'static str, _ctx: &SinkContext) -> Result<Self, SinkError> {
        config.validate()?;
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = if config.tls()? {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&config)?);
            Manager::from_config(config.pg_config()?, tls, manager_config)
        } else {
            Manager::from_config(config.pg_config()?, NoTls, manager_config)
        };
        let timeout = Some(std::time::Duration::from_millis(config.connect_timeout_ms));
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(timeout)
            .wait_timeout(timeout)
            .build()
            .map_err(|e| SinkError::Config(format!("postgres sink: {e}")))?;
        Ok(PostgresSink { kind, config, pool, cache: HashMap::new(), timescale: None, checkpoints: false })
    }
}

impl PostgresSink {
    /// The schema holding the timescaledb extension, if tables are to become hypertables.
    async fn hypertables(&mut self, client: &tokio_postgres::Client) -> Result<Option<String>, SinkError> {
        if let Some(t) = &self.timescale {
            return Ok(t.clone());
        }
        let found = match self.config.hypertable {
            Hypertable::Off => None,
            Hypertable::Auto => {
                let rows = client
                    .query_typed(
                        "SELECT extversion, extnamespace::regnamespace::text FROM pg_extension \
                         WHERE extname = 'timescaledb'",
                        &[],
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                rows.first().map(|row| {
                    let (version, schema): (String, String) = (row.get(0), row.get(1));
                    info!(schema = %self.config.schema, version, "timescaledb present: tables become hypertables");
                    schema
                })
            }
        };
        self.timescale = Some(found.clone());
        Ok(found)
    }
}

/// TLS with ring, trusting the public web roots and the configured CA file.
pub(super) fn tls_config(config: &PostgresConfig) -> Result<rustls::ClientConfig, SinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |m: String| SinkError::Config(format!("postgres sink: {m}"));
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = &config.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(bad(format!("ca_file {} holds no certificate", path.display())));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// PostgreSQL text cannot hold NUL characters.
fn check_text(r: &Record) -> Result<(), String> {
    let strings = r.tags.values().map(String::as_str).chain(std::iter::once(r.device.as_str())).chain(
        r.fields.values().filter_map(|v| match v {
            roost_core::FieldValue::Str(s) => Some(s.as_str()),
            _ => None,
        }),
    );
    for s in strings {
        if s.contains('\0') {
            return Err("PostgreSQL text cannot hold NUL (\\0) characters".into());
        }
    }
    Ok(())
}

#[async_trait]
impl Sink for PostgresSink {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn write(&mut self, batch: Arc<Vec<Record>>) -> Result<WriteOutcome, SinkError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let kind = self.kind;
        let mut w = self.writer().await?;
        sql::write_batch(&mut w, &batch, kind, None).await
    }

    /// Writes the batch and the position's checkpoint in one transaction
    /// (`replay::write_batch_at`).
    async fn write_at(
        &mut self,
        batch: Arc<Vec<Record>>,
        position: &Position,
    ) -> Result<WriteOutcome, SinkError> {
        let kind = self.kind;
        replay::write_batch_at(&mut self.writer().await?, &batch, kind, position).await
    }

    async fn committed(&mut self, stream: &str) -> Result<Option<u64>, SinkError> {
        let kind = self.kind;
        replay::committed(&mut self.writer().await?, kind, stream).await
    }

    fn replay_safety(&self) -> &'static str {
        replay::SAFETY
    }
}

impl PostgresSink {
    /// A pooled connection, ready to write a batch.
    async fn writer(&mut self) -> Result<PgWrite<'_>, SinkError> {
        let client = self.pool.get().await.map_err(|e| match &e {
            // Why the connection failed (refused, TLS, authentication) is in the driver's error.
            deadpool_postgres::PoolError::Backend(pg) => unavailable(pg),
            other => SinkError::Unavailable(format!("postgres sink: {other}")),
        })?;
        let hypertable = self.hypertables(&client).await?;
        Ok(PgWrite { sink: self, client, hypertable })
    }
}

/// One batch's write over one pooled connection.
struct PgWrite<'s> {
    sink: &'s mut PostgresSink,
    client: deadpool_postgres::Object,
    /// The timescaledb extension's schema, when tables become hypertables.
    hypertable: Option<String>,
}

impl BatchWriter for PgWrite<'_> {
    type Error = tokio_postgres::Error;

    async fn prepare(
        &mut self,
        batch: &[Record],
        rejected: &mut Vec<Rejected>,
    ) -> Result<Vec<Group>, SinkError> {
        let config = &self.sink.config;
        let mut catalog = PgCatalog {
            client: &self.client,
            schema: &config.schema,
            hypertable: self.hypertable.as_deref().map(|ext| (ext, config.chunk_interval.as_str())),
        };
        let rules = sql::Rules {
            table_prefix: &config.table_prefix,
            check: check_text,
            max_columns: config.max_columns,
            max_name: MAX_NAME,
        };
        sql::prepare(&mut catalog, &mut self.sink.cache, batch, &rules, rejected).await
    }

    async fn write_groups(&mut self, batch: &[Record], plan: &Plan<'_>) -> Result<(), Self::Error> {
        let config = &self.sink.config;
        let tx = self.client.transaction().await?;
        for g in plan.groups.iter().filter(|g| !g.records.is_empty()) {
            let table = qualified(&config.schema, &g.layout);
            match config.write_method {
                WriteMethod::Copy => copy_rows(&tx, &table, &g.layout, batch, &g.records).await?,
                WriteMethod::Insert => {
                    let width = g.layout.columns.len() + 2;
                    let chunks = chunk_rows(&g.records, width, MAX_PARAMS, config.max_statement_bytes, |i| {
                        record_bytes(&batch[i])
                    });
                    for range in chunks {
                        insert_rows(&*tx, &table, &g.layout, batch, &g.records[range]).await?;
                    }
                }
            }
        }
        store_checkpoint(&tx, &config.schema, plan.checkpoint).await?;
        tx.commit().await
    }

    async fn write_each(
        &mut self,
        batch: &[Record],
        plan: &Plan<'_>,
    ) -> Result<Refused<Self::Error>, Self::Error> {
        let schema = &self.sink.config.schema;
        let mut tx = self.client.transaction().await?;
        let mut refused = Vec::new();
        for g in &plan.groups {
            let table = qualified(schema, &g.layout);
            for &i in &g.records {
                let record = tx.savepoint("roost_record").await?;
                match insert_rows(&*record, &table, &g.layout, batch, &[i]).await {
                    Ok(()) => record.commit().await?,
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        record.rollback().await?;
                        refused.push((i, e));
                    }
                }
            }
        }
        store_checkpoint(&tx, schema, plan.checkpoint).await?;
        tx.commit().await?;
        Ok(refused)
    }

    async fn committed(&mut self, stream: &str) -> Result<Option<i64>, Self::Error> {
        let table = format!("{}.{}", quote(&self.sink.config.schema), quote(CHECKPOINT_TABLE));
        if !self.sink.checkpoints {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {table} \
                 (stream text PRIMARY KEY, seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
            );
            match self.client.batch_execute(&sql).await {
                Ok(()) => {}
                // Another sink created it at the same moment.
                Err(e)
                    if e.code().is_some_and(|c| {
                        *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_TABLE
                    }) => {}
                Err(e) => return Err(e),
            }
            self.sink.checkpoints = true;
        }
        let sql = format!("SELECT seq FROM {table} WHERE stream = $1");
        let row = self.client.query_typed(&sql, &[(&stream, Type::TEXT)]).await?;
        Ok(row.first().map(|r| r.get(0)))
    }

    fn forget_schema(&mut self) {
        self.sink.cache.clear();
    }
}

/// Upserts the stream's checkpoint in the batch's transaction.
async fn store_checkpoint(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    checkpoint: Option<Checkpoint<'_>>,
) -> Result<(), tokio_postgres::Error> {
    let Some(c) = checkpoint else { return Ok(()) };
    let sql = format!(
        "INSERT INTO {}.{} (stream, seq, updated_at) VALUES ($1, $2, now()) \
         ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
        quote(schema),
        quote(CHECKPOINT_TABLE)
    );
    tx.execute_typed(&sql, &[(&c.stream, Type::TEXT), (&c.seq, Type::INT8)]).await.map(|_| ())
}

fn qualified(schema: &str, layout: &Layout) -> String {
    format!("{}.{}", quote(schema), quote(&layout.table))
}

fn column_list(layout: &Layout) -> String {
    let mut cols = vec!["time".to_owned(), "device".to_owned()];
    cols.extend(layout.columns.iter().map(|(c, _)| quote(c)));
    cols.join(", ")
}

async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    layout: &Layout,
    batch: &[Record],
    records: &[usize],
) -> Result<(), tokio_postgres::Error> {
    let sql = format!("COPY {table} ({}) FROM STDIN BINARY", column_list(layout));
    let sink = tx.copy_in(&sql).await?;
    let mut types = vec![Type::TIMESTAMPTZ, Type::TEXT];
    types.extend(layout.columns.iter().map(|(_, ty)| pg_type(*ty)));
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    let mut cells: Vec<Cell<'_>> = Vec::new();
    for &i in records {
        let r = &batch[i];
        // prepare() checked every record against this layout.
        let _ = layout.cells(r, &mut cells);
        let time = PgTime(r.time);
        let wrapped: Vec<PgCell<'_>> = cells.iter().map(|c| PgCell(*c)).collect();
        let mut row: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(wrapped.len() + 2);
        row.push(&time);
        row.push(&r.device);
        row.extend(wrapped.iter().map(|c| c as &(dyn ToSql + Sync)));
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await.map(|_| ())
}

async fn insert_rows(
    client: &(impl GenericClient + Sync),
    table: &str,
    layout: &Layout,
    batch: &[Record],
    records: &[usize],
) -> Result<(), tokio_postgres::Error> {
    let width = layout.columns.len() + 2;
    let mut values = String::new();
    for row in 0..records.len() {
        values.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..width {
            if col > 0 {
                values.push_str(", ");
            }
            values.push_str(&format!("${}", row * width + col + 1));
        }
        values.push(')');
    }
    let sql = format!("INSERT INTO {table} ({}) VALUES {values}", column_list(layout));
    let mut times = Vec::with_capacity(records.len());
    let mut cells: Vec<PgCell<'_>> = Vec::with_capacity(records.len() * layout.columns.len());
    let mut buf = Vec::new();
    for &i in records {
        let r = &batch[i];
        let _ = layout.cells(r, &mut buf);
        times.push(PgTime(r.time));
        cells.extend(buf.iter().map(|c| PgCell(*c)));
    }
    // Typed parameters use the unnamed statement: one round trip, nothing left on the server.
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::with_capacity(records.len() * width);
    let per = layout.columns.len();
    for (n, &i) in records.iter().enumerate() {
        params.push((&times[n], Type::TIMESTAMPTZ));
        params.push((&batch[i].device, Type::TEXT));
        let row = cells[n * per..(n + 1) * per].iter().zip(&layout.columns);
        params.extend(row.map(|(c, (_, ty))| (c as &(dyn ToSql + Sync), pg_type(*ty))));
    }
    client.execute_typed(sql.as_str(), &params).await.map(|_| ())
}
