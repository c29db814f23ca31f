//! How the schema policy maps onto PostgreSQL: quoting, column types, the catalog reads and
//! DDL, and the binary encoding of values.

use std::error::Error as StdError;

use bytes::BytesMut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::sql::{Catalog, Cell, ColType, DbError, Layout};
use crate::{names, SinkError};

/// Quotes an identifier (`"` doubled). Names are validated before they get here.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn type_sql(ty: ColType) -> &'static str {
    match ty {
        ColType::BigInt => "bigint",
        ColType::Double => "double precision",
        ColType::Boolean => "boolean",
        ColType::Text => "text",
    }
}

pub fn pg_type(ty: ColType) -> Type {
    match ty {
        ColType::BigInt => Type::INT8,
        ColType::Double => Type::FLOAT8,
        ColType::Boolean => Type::BOOL,
        ColType::Text => Type::TEXT,
    }
}

fn col_type(data_type: &str) -> Option<ColType> {
    match data_type {
        "bigint" => Some(ColType::BigInt),
        "double precision" => Some(ColType::Double),
        "boolean" => Some(ColType::Boolean),
        "text" | "character varying" => Some(ColType::Text),
        _ => None,
    }
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A record time (ns since the Unix epoch) as a `timestamptz` (microsecond precision).
#[derive(Debug, Clone, Copy)]
pub struct PgTime(pub i64);

impl ToSql for PgTime {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let us = self.0.div_euclid(1000) - PG_EPOCH_US;
        out.extend_from_slice(&us.to_be_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }

    to_sql_checked!();
}

/// A [`Cell`] bound to a PostgreSQL parameter or COPY column.
#[derive(Debug, Clone, Copy)]
pub struct PgCell<'a>(pub Cell<'a>);

impl ToSql for PgCell<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int(v) if *ty == Type::FLOAT8 => (v as f64).to_sql(ty, out),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Float(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::FLOAT8, Type::BOOL, Type::TEXT, Type::VARCHAR].contains(ty)
    }

    to_sql_checked!();
}

impl DbError for tokio_postgres::Error {
    fn is_transient(&self) -> bool {
        match self.code() {
            // No SQLSTATE: the connection broke, or the server never answered.
            None => true,
            Some(code) => {
                let class = &code.code()[..2];
                // connection, resources, operator intervention, system, transaction rollback
                matches!(class, "08" | "53" | "57" | "58" | "40") || *code == SqlState::LOCK_NOT_AVAILABLE
            }
        }
    }

    fn describe(&self) -> String {
        describe(self)
    }
}

/// An error as the operator should read it: the server's SQLSTATE and message when there is
/// one, else the driver's error and its cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// A DDL statement's error: worth retrying ([`DbError::is_transient`]) or refused for good (a
/// name clash, too many columns, no permission), which refuses the records that need it.
fn ddl_error(sql: &str, e: &tokio_postgres::Error) -> SinkError {
    let message = format!("postgres sink: {sql}: {}", describe(e));
    if e.is_transient() {
        SinkError::Unavailable(message)
    } else {
        SinkError::Config(message)
    }
}

pub fn unavailable(e: &tokio_postgres::Error) -> SinkError {
    SinkError::Unavailable(format!("postgres sink: {}", describe(e)))
}

/// Catalog reads and DDL for one schema, over one connection.
pub struct PgCatalog<'c> {
    pub client: &'c tokio_postgres::Client,
    pub schema: &'c str,
    /// `Some((schema of the timescaledb extension, chunk interval))` when tables become
    /// hypertables.
    pub hypertable: Option<(&'c str, &'c str)>,
}

impl PgCatalog<'_> {
    fn table(&self, table: &str) -> String {
        format!("{}.{}", quote(self.schema), quote(table))
    }

    /// Runs DDL; errors that mean "another writer did it first" count as success, and errors
    /// the database will repeat are permanent ([`ddl_error`]).
    async fn ddl(&self, sql: &str, already: &[SqlState]) -> Result<(), SinkError> {
        match self.client.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(e) if e.code().is_some_and(|c| already.contains(c)) => Ok(()),
            Err(e) => Err(ddl_error(sql, &e)),
        }
    }
}

/// The columns of `schema.table` with their `data_type`, in order (none: no such table).
pub(super) async fn table_columns(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[(&schema, Type::TEXT), (&table, Type::TEXT)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

impl Catalog for PgCatalog<'_> {
    async fn load(&mut self, table: &str) -> Result<Option<Layout>, SinkError> {
        let found = self
            .client
            .query_typed(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = $1 AND lower(table_name) = lower($2) ORDER BY table_name LIMIT 1",
                &[(&self.schema, Type::TEXT), (&table, Type::TEXT)],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(row) = found.first() else { return Ok(None) };
        let name: String = row.get(0);
        let columns = table_columns(self.client, self.schema, &name).await.map_err(|e| unavailable(&e))?;
        let starts_right =
            columns.first().is_some_and(|(c, t)| c == names::TIME && t.starts_with("timestamp"))
                && columns.get(1).is_some_and(|(c, _)| c == names::DEVICE);
        if !starts_right {
            return Err(SinkError::Config(format!(
                "table {}.{name} exists but does not start with (time timestamptz, device) columns; \
                 it was not created by Roost",
                self.schema
            )));
        }
        let typed = columns.into_iter().skip(2).filter_map(|(c, t)| col_type(&t).map(|ty| (c, ty))).collect();
        Ok(Some(Layout::new(name, typed)))
    }

    async fn create(&mut self, table: &str) -> Result<(), SinkError> {
        let full = self.table(table);
        let exists = [SqlState::DUPLICATE_TABLE, SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_OBJECT];
        self.ddl(
            &format!("CREATE TABLE IF NOT EXISTS {full} (time timestamptz NOT NULL, device text NOT NULL)"),
            &exists,
        )
        .await?;
        // PostgreSQL cuts names at 63 bytes.
        let index = quote(&names::index_name(table, 63));
        self.ddl(&format!("CREATE INDEX IF NOT EXISTS {index} ON {full} (device, time DESC)"), &exists)
            .await?;
        if let Some((extension_schema, interval)) = self.hypertable {
            let relation = format!("{}.{}", quote(self.schema), quote(table));
            // Qualified: the extension's schema need not be on the search path.
            let sql = format!(
                "SELECT {}.create_hypertable($1::text::regclass, 'time'::name, \
                 chunk_time_interval => $2::text::interval, if_not_exists => TRUE, migrate_data => TRUE)",
                quote(extension_schema)
            );
            self.client
                .execute_typed(&sql, &[(&relation, Type::TEXT), (&interval, Type::TEXT)])
                .await
                .map_err(|e| ddl_error(&format!("create_hypertable({relation})"), &e))?;
        }
        Ok(())
    }

    async fn add_column(&mut self, table: &str, column: &str, ty: ColType) -> Result<(), SinkError> {
        let sql = format!("ALTER TABLE {} ADD COLUMN {} {}", self.table(table), quote(column), type_sql(ty));
        self.ddl(&sql, &[SqlState::DUPLICATE_COLUMN]).await
    }

    async fn widen(&mut self, table: &str, column: &str) -> Result<(), SinkError> {
        let sql =
            format!("ALTER TABLE {} ALTER COLUMN {} TYPE double precision", self.table(table), quote(column));
        self.ddl(&sql, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_encode_as_microseconds_since_2000() {
        let mut out = BytesMut::new();
        PgTime(946_684_800_000_000_999).to_sql(&Type::TIMESTAMPTZ, &mut out).unwrap();
        assert_eq!(&out[..], &0i64.to_be_bytes());
        out.clear();
        PgTime(-1).to_sql(&Type::TIMESTAMPTZ, &mut out).unwrap();
        assert_eq!(&out[..], &(-1 - PG_EPOCH_US).to_be_bytes());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
