//! Reading a MySQL/MariaDB sink's tables back (`roost export`): tables of the connection's
//! database whose names start with the sink's `table_prefix` and whose first columns are `time`
//! and `device` are measurements. Rows come through a prepared statement (the binary protocol:
//! doubles exact) and are read from the socket one at a time as the stream is polled, so memory
//! stays constant however large the table.
//!
//! Times are `DATETIME(6)` in UTC: microseconds. `BOOLEAN` columns (`tinyint(1)`) read back as
//! booleans, `BIGINT` as integers, `DOUBLE` as floats, text as strings.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Value};
use roost_core::FieldValue;

use super::config::MysqlConfig;
use super::schema::{datetime, describe, quote};
use crate::export::{
    days_from_civil, unprefixed, ExportError, OpenSource, Precision, Query, Row, Rows, Source,
};
use crate::names::{DEVICE, TIME};
use crate::{SinkConfig, SinkContext};

/// Reads one MySQL database over one connection.
pub struct MysqlSource {
    conn: Conn,
    prefix: String,
}

#[async_trait]
impl OpenSource for MysqlConfig {
    async fn open_source(
        &self,
        _kind: &'static str,
        _ctx: &SinkContext,
    ) -> Result<Box<dyn Source>, ExportError> {
        self.validate().map_err(|e| ExportError::Config(e.to_string()))?;
        let opts = OptsBuilder::from_opts(self.opts().map_err(|e| ExportError::Config(e.to_string()))?)
            .init(vec!["SET SESSION time_zone = '+00:00'"]);
        let conn = Conn::new(opts)
            .await
            .map_err(|e| ExportError::Unavailable(format!("mysql sink: cannot connect: {}", describe(&e))))?;
        Ok(Box::new(MysqlSource { conn, prefix: self.table_prefix.clone() }))
    }
}

fn failed(e: &mysql_async::Error) -> ExportError {
    ExportError::Unavailable(format!("mysql sink: {}", describe(e)))
}

impl MysqlSource {
    async fn table_columns(&mut self, table: &str) -> Result<Vec<(String, String)>, ExportError> {
        self.conn
            .exec(
                "SELECT column_name, column_type FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                (table,),
            )
            .await
            .map_err(|e| failed(&e))
    }
}

#[async_trait]
impl Source for MysqlSource {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn precision(&self) -> Precision {
        Precision::Micros
    }

    async fn measurements(&mut self) -> Result<Vec<String>, ExportError> {
        let tables: Vec<String> = self
            .conn
            .query(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND ((ordinal_position = 1 AND column_name = 'time') \
                   OR (ordinal_position = 2 AND column_name = 'device')) \
                 GROUP BY table_name HAVING count(*) = 2 ORDER BY table_name",
            )
            .await
            .map_err(|e| failed(&e))?;
        Ok(unprefixed(tables, &self.prefix))
    }

    async fn columns(&mut self, measurement: &str, _query: &Query) -> Result<Vec<String>, ExportError> {
        let columns = self.table_columns(&format!("{}{measurement}", self.prefix)).await?;
        Ok(columns.into_iter().skip(2).map(|(c, _)| c).collect())
    }

    async fn rows<'a>(&'a mut self, measurement: &str, query: &Query) -> Result<Rows<'a>, ExportError> {
        let table = format!("{}{measurement}", self.prefix);
        let columns = self.table_columns(&table).await?;
        let names: Vec<(Arc<str>, bool)> = columns
            .iter()
            .skip(2)
            .map(|(c, t)| (Arc::from(c.as_str()), t.to_ascii_lowercase().starts_with("tinyint(1)")))
            .collect();
        let list: Vec<String> = columns.iter().map(|(c, _)| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {} WHERE 1 = 1", list.join(", "), quote(&table));
        let mut params: Vec<Value> = Vec::new();
        if let Some(us) = query.from_in(1000) {
            params.push(datetime(us * 1000));
            sql.push_str(&format!(" AND {} >= ?", quote(TIME)));
        }
        if let Some(us) = query.to_in(1000) {
            params.push(datetime(us * 1000));
            sql.push_str(&format!(" AND {} < ?", quote(TIME)));
        }
        if !query.devices.is_empty() {
            let marks = vec!["?"; query.devices.len()].join(", ");
            sql.push_str(&format!(" AND {} IN ({marks})", quote(DEVICE)));
            params.extend(query.devices.iter().map(|d| Value::from(d.as_str())));
        }
        sql.push_str(&format!(" ORDER BY {}, {}", quote(TIME), quote(DEVICE)));
        let params = if params.is_empty() { mysql_async::Params::Empty } else { params.into() };
        let stream = self.conn.exec_stream::<mysql_async::Row, _, _>(sql, params).await.map_err(|e| {
            ExportError::Unavailable(format!("mysql sink: reading {table}: {}", describe(&e)))
        })?;
        Ok(stream.map(move |r| r.map_err(|e| failed(&e)).and_then(|row| convert(row, &names))).boxed())
    }
}

fn convert(row: mysql_async::Row, names: &[(Arc<str>, bool)]) -> Result<Row, ExportError> {
    let mut cells = row.unwrap().into_iter();
    let time = match cells.next() {
        Some(Value::Date(y, mo, d, h, mi, s, us)) => {
            let days = days_from_civil(i64::from(y), u32::from(mo), u32::from(d));
            let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
            secs * 1_000_000_000 + i64::from(us) * 1000
        }
        other => {
            return Err(ExportError::Unavailable(format!("mysql sink: unexpected time value {other:?}")))
        }
    };
    let device = match cells.next() {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => {
            return Err(ExportError::Unavailable(format!("mysql sink: unexpected device value {other:?}")))
        }
    };
    let mut values = Vec::new();
    for ((name, boolean), cell) in names.iter().zip(cells) {
        let value = match cell {
            Value::NULL => continue,
            Value::Int(v) if *boolean => FieldValue::Bool(v != 0),
            Value::Int(v) => FieldValue::Int(v),
            Value::UInt(v) => i64::try_from(v).map_or(FieldValue::Float(v as f64), FieldValue::Int),
            Value::Float(v) => FieldValue::Float(v.into()),
            Value::Double(v) => FieldValue::Float(v),
            Value::Bytes(b) => FieldValue::Str(String::from_utf8_lossy(&b).into_owned()),
            other => FieldValue::Str(other.as_sql(true)),
        };
        values.push((name.clone(), value));
    }
    Ok(Row { time, device, values })
}
