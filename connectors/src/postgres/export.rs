//! Reading a PostgreSQL/TimescaleDB sink's tables back (`roost export`): tables of the sink's
//! schema whose names start with its `table_prefix` and whose first columns are `time` and
//! `device` are measurements. Rows are read through a cursor (`DECLARE ... CURSOR`, on the
//! server) a page at a time, inside a read-only transaction, so memory stays constant however
//! large the table.
//!
//! Times are `timestamptz`: microseconds. Columns read back with their stored types (`bigint`,
//! `double precision`, `boolean`, `text`); a column of another type (added by hand) is read as
//! its text form.

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use roost_core::FieldValue;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};

use super::config::PostgresConfig;
use super::schema::{self, describe, quote, PG_EPOCH_US};
use super::sink::tls_config;
use crate::export::{
    batched, unprefixed, Cursor, ExportError, OpenSource, Precision, Query, Row, Rows, Source,
};
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
        schema::table_columns(&self.client, &self.schema, table).await.map_err(|e| self.failed(&e))
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
        Ok(unprefixed(rows.iter().map(|r| r.get::<_, String>(0)), &self.prefix))
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
        // Values are written into the cursor's query (DECLARE takes no parameters): times as
        // whole microseconds (exact), devices as escaped literals.
        let at = |us: i64| format!("('epoch'::timestamptz + {us} * interval '1 microsecond')");
        if let Some(us) = query.from_in(1000) {
            sql.push_str(&format!(" AND {} >= {}", quote(TIME), at(us)));
        }
        if let Some(us) = query.to_in(1000) {
            sql.push_str(&format!(" AND {} < {}", quote(TIME), at(us)));
        }
        if !query.devices.is_empty() {
            let list: Vec<String> = query.devices.iter().map(|d| literal(d)).collect();
            sql.push_str(&format!(" AND {} IN ({})", quote(DEVICE), list.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {}, {}", quote(TIME), quote(DEVICE)));
        let kind = self.kind;
        let fail = move |e: tokio_postgres::Error| {
            ExportError::Unavailable(format!("{kind} sink: reading {table}: {}", describe(&e)))
        };
        // A cursor (on the server, in a read-only transaction) fetched a page at a time with
        // unnamed statements: PGlite keeps named statements across connections, so a portal's
        // statement would clash with the next export's.
        let tx = self.client.build_transaction().read_only(true).start().await.map_err(fail.clone())?;
        tx.batch_execute(&format!("DECLARE roost_export NO SCROLL CURSOR FOR {sql}"))
            .await
            .map_err(fail.clone())?;
        Ok(batched(PgCursor { tx: Some(tx), kinds, fail: Box::new(fail) }))
    }
}

/// A string literal that means the same whatever `standard_conforming_strings` says.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
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
    /// Committed (which closes the cursor) as soon as the last page is read: PGlite keeps a
    /// transaction left open by a connection that went away.
    tx: Option<Transaction<'a>>,
    kinds: Vec<(Arc<str>, ColKind)>,
    fail: Box<dyn Fn(tokio_postgres::Error) -> ExportError + Send + Sync>,
}

#[async_trait]
impl Cursor for PgCursor<'_> {
    async fn next_batch(&mut self) -> Result<Option<Vec<Row>>, ExportError> {
        let Some(tx) = &self.tx else { return Ok(None) };
        let fetch = format!("FETCH {PAGE} FROM roost_export");
        let rows = tx.query_typed(&fetch, &[]).await.map_err(&self.fail)?;
        if rows.len() < PAGE as usize {
            if let Some(tx) = self.tx.take() {
                tx.commit().await.map_err(&self.fail)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("it's a\\b"), "E'it\\'s a\\\\b'");
    }
}
