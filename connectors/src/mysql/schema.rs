//! How the schema policy maps onto MySQL/MariaDB: quoting, column types, catalog reads, DDL,
//! value conversion and error classes.

use mysql_async::prelude::Queryable;
use mysql_async::Value;

use crate::export::civil_from_days;
use crate::sql::{Catalog, Cell, ColType, DbError, Layout};
use crate::{names, SinkError};

/// Quotes an identifier with backticks (doubled inside). Names are validated before this.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn type_sql(ty: ColType) -> &'static str {
    match ty {
        ColType::BigInt => "BIGINT",
        ColType::Double => "DOUBLE",
        ColType::Boolean => "BOOLEAN",
        ColType::Text => "MEDIUMTEXT",
    }
}

fn col_type(column_type: &str) -> Option<ColType> {
    let t = column_type.to_ascii_lowercase();
    if t.starts_with("tinyint(1)") {
        Some(ColType::Boolean)
    } else if t.starts_with("bigint") {
        Some(ColType::BigInt)
    } else if t.starts_with("double") {
        Some(ColType::Double)
    } else if t.contains("text") || t.starts_with("varchar") {
        Some(ColType::Text)
    } else {
        None
    }
}

/// A record time (ns since the Unix epoch) as a UTC `DATETIME(6)` value.
pub fn datetime(ns: i64) -> Value {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = (ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    Value::Date(y as u16, m as u8, d as u8, (s / 3600) as u8, (s % 3600 / 60) as u8, (s % 60) as u8, micros)
}

pub fn value(c: Cell<'_>) -> Value {
    match c {
        Cell::Null => Value::NULL,
        Cell::Int(v) => Value::Int(v),
        Cell::Float(v) => Value::Double(v),
        Cell::Bool(v) => Value::Int(i64::from(v)),
        Cell::Text(v) => Value::Bytes(v.as_bytes().to_vec()),
    }
}

/// Server errors that mean "try later", not "the data is refused".
const TRANSIENT_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1205, // lock wait timeout
    1213, // deadlock
    1927, // connection was killed
    2006, // server has gone away
    2013, // lost connection
];

impl DbError for mysql_async::Error {
    fn is_transient(&self) -> bool {
        match self {
            mysql_async::Error::Server(s) => TRANSIENT_CODES.contains(&s.code),
            mysql_async::Error::Url(_) => false,
            _ => true,
        }
    }

    fn describe(&self) -> String {
        describe(self)
    }
}

pub fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

pub fn unavailable(e: &mysql_async::Error) -> SinkError {
    SinkError::Unavailable(format!("mysql sink: {}", describe(e)))
}

/// Catalog reads and DDL in the connection's database.
pub struct MyCatalog<'c> {
    pub conn: &'c mut mysql_async::Conn,
}

impl MyCatalog<'_> {
    /// Runs DDL; the server error `already` (another writer did it first) counts as success.
    /// Errors the server will repeat (identifier too long, too many columns, row size too
    /// large, no permission) are permanent: they refuse the records that need the DDL.
    async fn ddl(&mut self, sql: String, already: &[u16]) -> Result<(), SinkError> {
        match self.conn.query_drop(&sql).await {
            Ok(()) => Ok(()),
            Err(mysql_async::Error::Server(s)) if already.contains(&s.code) => Ok(()),
            Err(e) if e.is_transient() => {
                Err(SinkError::Unavailable(format!("mysql sink: {sql}: {}", describe(&e))))
            }
            Err(e) => Err(SinkError::Config(format!("mysql sink: {sql}: {}", describe(&e)))),
        }
    }
}

impl Catalog for MyCatalog<'_> {
    async fn load(&mut self, table: &str) -> Result<Option<Layout>, SinkError> {
        let found: Option<String> = self
            .conn
            .exec_first(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND lower(table_name) = lower(?) ORDER BY table_name LIMIT 1",
                (table,),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(name) = found else { return Ok(None) };
        let columns: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT column_name, column_type FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                (&name,),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let starts_right =
            columns.first().is_some_and(|(c, t)| c == names::TIME && t.starts_with("datetime"))
                && columns.get(1).is_some_and(|(c, _)| c == names::DEVICE);
        if !starts_right {
            return Err(SinkError::Config(format!(
                "table {name} exists but does not start with (time DATETIME(6), device) columns; \
                 it was not created by Roost"
            )));
        }
        let typed = columns.into_iter().skip(2).filter_map(|(c, t)| col_type(&t).map(|ty| (c, ty))).collect();
        Ok(Some(Layout::new(name, typed)))
    }

    async fn create(&mut self, table: &str) -> Result<(), SinkError> {
        // MySQL allows 64 characters; index names are per table.
        let index = quote(&names::index_name(table, 64));
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (time DATETIME(6) NOT NULL, device VARCHAR(255) NOT NULL, \
             INDEX {index} (device, time)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            quote(table)
        );
        self.ddl(sql, &[1050]).await
    }

    async fn add_column(&mut self, table: &str, column: &str, ty: ColType) -> Result<(), SinkError> {
        let sql = format!("ALTER TABLE {} ADD COLUMN {} {} NULL", quote(table), quote(column), type_sql(ty));
        self.ddl(sql, &[1060]).await
    }

    async fn widen(&mut self, table: &str, column: &str) -> Result<(), SinkError> {
        let sql = format!("ALTER TABLE {} MODIFY COLUMN {} DOUBLE NULL", quote(table), quote(column));
        self.ddl(sql, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_become_utc_datetimes_with_microseconds() {
        assert_eq!(datetime(0), Value::Date(1970, 1, 1, 0, 0, 0, 0));
        assert_eq!(datetime(1_767_225_600_123_456_789), Value::Date(2026, 1, 1, 0, 0, 0, 123_456));
        assert_eq!(datetime(951_782_400_000_000_000), Value::Date(2000, 2, 29, 0, 0, 0, 0));
        assert_eq!(datetime(-1), Value::Date(1969, 12, 31, 23, 59, 59, 999_999));
        assert_eq!(datetime(1_700_000_000_000_000_000), Value::Date(2023, 11, 14, 22, 13, 20, 0));
    }

    #[test]
    fn column_types_from_the_catalog() {
        assert_eq!(col_type("tinyint(1)"), Some(ColType::Boolean));
        assert_eq!(col_type("bigint(20)"), Some(ColType::BigInt));
        assert_eq!(col_type("double"), Some(ColType::Double));
        assert_eq!(col_type("mediumtext"), Some(ColType::Text));
        assert_eq!(col_type("blob"), None);
        assert_eq!(quote("a`b"), "`a``b`");
    }
}
