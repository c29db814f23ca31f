//! Reading a PostgreSQL/TimescaleDB sink's tables back (`roost export`): tables of the sink's
//! schema whose names start with its `table_prefix` and whose first columns are `time` and
//! `device` are measurements. Rows are read through a portal (a server-side cursor) a page at
//! a time, inside a read-only transaction, so memory stays constant however large the table.
//!
//! Times are `timestamptz`: microseconds. Columns read back with their stored types (`bigint`,
//! `double precision`, `boolean`, `text`); a column of another type (added by hand) is read as
//! its text form.

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use roost_core::FieldValue;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, NoTls, Portal, Transaction};

use super::config::PostgresConfig;
use super::schema::{describe, quote, PgTime, PG_EPOCH_US};
use super::sink::tls_config;
use crate::export::{batched, Cursor, ExportError, OpenSource, Precision, Query, Row, Rows, Source};
use crate::names::{DEVICE, TIME};
use crate::{SinkConfig, SinkContext};

/// Rows fetched from the portal at a time.
const PAGE: i32 = 2000;

/// Reads one PostgreSQL schema over one connection.
pub struct PostgresSource {
    kind: &'static str,
    client: Client,
    schema: String,
    prefix: String,
}

#[async_trait]
impl OpenSource for PostgresConfig {
    async fn open_source(
        &self,
        kind: &'static str,
        _ctx: &SinkContext,
    ) -> Result<Box<dyn Source>, ExportError> {
        self.validate().map_err(|e| ExportError::Config(e.to_string()))?;
        let pg = self.pg_config().map_err(|e| ExportError::Config(e.to_string()))?;
        let down = |e: tokio_postgres::Error| {
            ExportError::Unavailable(format!("{kind} sink: cannot connect: {}", describe(&e)))
        };
        let client = if self.tls().map_err(|e| ExportError::Config(e.to_string()))? {
            let tls = tls_config(self).map_err(|e| ExportError::Config(e.to_string()))?;
            let (client, conn) =
                pg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)).await.map_err(down)?;
            tokio::spawn(conn);
            client
        } else {
            let (client, conn) = pg.connect(NoTls).await.map_err(down)?;
            tokio::spawn(conn);
            client
        };
        Ok(Box::new(PostgresSource {
            kind,
            client,
            schema: self.schema.clone(),
            prefix: self.table_prefix.clone(),
        }))
    }
}

impl PostgresSource {
    fn failed(&self, e: &tokio_postgres::Error) -> ExportError {
        ExportError::Unavailable(format!("{} sink: {}", self.kind, describe(e)))
    }

    /// The table's columns with their `data_type`, in order.
    async fn table_columns(&self, table: &str) -> Result<Vec<(String, String)>, ExportError> {
        let rows = self
            .client
            .query_typed(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[(&self.schema, Type::TEXT), (&table, Type::TEXT)],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn precision(&self) -> Precision {
        Precision::Micros
    }

    async fn measurements(&mut self) -> Result<Vec<String>, ExportError> {
        let rows = self
            .client
            .query_typed(
                "SELECT table_name::text FROM information_schema.columns WHERE table_schema = $1 \
                 AND ((ordinal_position = 1 AND column_name = 'time') \
                   OR (ordinal_position = 2 AND column_name = 'device')) \
                 GROUP BY table_name HAVING count(*) = 2 ORDER BY table_name",
                &[(&self.schema, Type::TEXT)],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, String>(0).strip_prefix(&self.prefix).map(str::to_owned))
            .filter(|m| !m.is_empty())
            .collect())
    }

    async fn columns(&mut self, measurement: &str, _query: &Query) -> Result<Vec<String>, ExportError> {
        let columns = self.table_columns(&format!("{}{measurement}", self.prefix)).await?;
        Ok(columns.into_iter().skip(2).map(|(c, _)| c).collect())
    }

    async fn rows<'a>(&'a mut self, measurement: &str, query: &Query) -> Result<Rows<'a>, ExportError> {
        let table = format!("{}{measurement}", self.prefix);
        let columns = self.table_columns(&table).await?;
        let mut select = vec![quote(TIME), quote(DEVICE)];
        let mut kinds = Vec::new();
        for (name, data_type) in columns.iter().skip(2) {
            let kind = ColKind::of(data_type);
            select.push(match kind {
                ColKind::Other => format!("{}::text", quote(name)),
                _ => quote(name),
            });
            kinds.push((Arc::<str>::from(name.as_str()), kind));
        }
        let mut sql =
            format!("SELECT {} FROM {}.{} WHERE true", select.join(", "), quote(&self.schema), quote(&table));
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        // A bound `PgTime` is the time in µs rounded down: rounded up, `from` keeps its meaning.
        let from_us = query.from_in(1000).map(|us| PgTime(us * 1000));
        let to_us = query.to_in(1000).map(|us| PgTime(us * 1000));
        if let Some(t) = &from_us {
            params.push((t, Type::TIMESTAMPTZ));
            sql.push_str(&format!(" AND {} >= ${}", quote(TIME), params.len()));
        }
        if let Some(t) = &to_us {
            params.push((t, Type::TIMESTAMPTZ));
            sql.push_str(&format!(" AND {} < ${}", quote(TIME), params.len()));
        }
        if !query.devices.is_empty() {
            params.push((&query.devices, Type::TEXT_ARRAY));
            sql.push_str(&format!(" AND {} = ANY(${})", quote(DEVICE), params.len()));
        }
        sql.push_str(&format!(" ORDER BY {}, {}", quote(TIME), quote(DEVICE)));
        let kind = self.kind;
        let fail = move |e: tokio_postgres::Error| {
            ExportError::Unavailable(format!("{kind} sink: reading {table}: {}", describe(&e)))
        };
        let tx = self.client.build_transaction().read_only(true).start().await.map_err(fail.clone())?;
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let stmt = tx.prepare_typed(&sql, &types).await.map_err(fail.clone())?;
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
        let portal = tx.bind(&stmt, &values).await.map_err(fail.clone())?;
        Ok(batched(PgCursor { tx, portal, kinds, fail: Box::new(fail), done: false }))
    }
}

/// How a column is read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColKind {
    BigInt,
    Int,
    SmallInt,
    Double,
    Real,
    Boolean,
    Text,
    /// Selected as `::text`.
    Other,
}

impl ColKind {
    fn of(data_type: &str) -> ColKind {
        match data_type {
            "bigint" => ColKind::BigInt,
            "integer" => ColKind::Int,
            "smallint" => ColKind::SmallInt,
            "double precision" => ColKind::Double,
            "real" => ColKind::Real,
            "boolean" => ColKind::Boolean,
            "text" | "character varying" | "character" | "name" => ColKind::Text,
            _ => ColKind::Other,
        }
    }
}

struct PgCursor<'a> {
    tx: Transaction<'a>,
    portal: Portal,
    kinds: Vec<(Arc<str>, ColKind)>,
    fail: Box<dyn Fn(tokio_postgres::Error) -> ExportError + Send + Sync>,
    done: bool,
}

#[async_trait]
impl Cursor for PgCursor<'_> {
    async fn next_batch(&mut self) -> Result<Option<Vec<Row>>, ExportError> {
        if self.done {
            return Ok(None);
        }
        let rows = self.tx.query_portal(&self.portal, PAGE).await.map_err(&self.fail)?;
        if rows.len() < PAGE as usize {
            self.done = true;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.row(r).map_err(&self.fail)?);
        }
        Ok(Some(out))
    }
}

impl PgCursor<'_> {
    fn row(&self, r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
        let time = r.try_get::<_, ReadTime>(0)?.0;
        let device: String = r.try_get(1)?;
        let mut values = Vec::new();
        for (i, (name, kind)) in self.kinds.iter().enumerate() {
            let i = i + 2;
            let value = match kind {
                ColKind::BigInt => r.try_get::<_, Option<i64>>(i)?.map(FieldValue::Int),
                ColKind::Int => r.try_get::<_, Option<i32>>(i)?.map(|v| FieldValue::Int(v.into())),
                ColKind::SmallInt => r.try_get::<_, Option<i16>>(i)?.map(|v| FieldValue::Int(v.into())),
                ColKind::Double => r.try_get::<_, Option<f64>>(i)?.map(FieldValue::Float),
                ColKind::Real => r.try_get::<_, Option<f32>>(i)?.map(|v| FieldValue::Float(v.into())),
                ColKind::Boolean => r.try_get::<_, Option<bool>>(i)?.map(FieldValue::Bool),
                ColKind::Text | ColKind::Other => r.try_get::<_, Option<String>>(i)?.map(FieldValue::Str),
            };
            if let Some(v) = value {
                values.push((name.clone(), v));
            }
        }
        Ok(Row { time, device, values })
    }
}

/// A `timestamptz` read as ns since the Unix epoch.
struct ReadTime(i64);

impl<'a> FromSql<'a> for ReadTime {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let us = i64::from_sql(&Type::INT8, raw)?;
        Ok(ReadTime(us.saturating_add(PG_EPOCH_US).saturating_mul(1000)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }
}
