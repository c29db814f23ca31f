//! Options of the `postgres` / `timescaledb` sink.

use std::str::FromStr;

use roost_core::ident;
use serde::{Deserialize, Serialize};

use crate::{SinkConfig, SinkError};

/// `[[sinks]]` options for `kind = "postgres"` or `kind = "timescaledb"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgresql://user:password@host:port/database`. With `?sslmode=require` the connection
    /// uses TLS (rustls) and verifies the server's certificate and name against the public web
    /// roots plus `ca_file`; any other sslmode connects without TLS.
    pub url: String,
    /// A PEM file of CA certificates to trust (for a private CA or a self-signed server), with
    /// `sslmode=require`.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The schema tables are created in.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Prepended to each measurement to name its table.
    #[serde(default)]
    pub table_prefix: String,
    /// Connections kept open. One write is in flight per sink, so 1 is enough; TimescaleDB on
    /// PGlite accepts only one connection.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// `copy` (binary COPY, fastest) or `insert` (multi-row INSERT with bound parameters, for
    /// servers without COPY FROM STDIN).
    #[serde(default)]
    pub write_method: WriteMethod,
    /// `auto`: make each table a hypertable when the timescaledb extension is installed;
    /// `off`: never.
    #[serde(default)]
    pub hypertable: Hypertable,
    /// With `write_method = "insert"`: the largest statement sent, in bytes (estimated).
    /// PostgreSQL takes up to 1 GiB; PGlite fails on very large statements (32 KiB works).
    #[serde(default = "default_max_statement_bytes")]
    pub max_statement_bytes: usize,
    /// The hypertable chunk interval, as a PostgreSQL interval (`1 day`, `6 hours`).
    #[serde(default = "default_chunk_interval")]
    pub chunk_interval: String,
    /// How long connecting may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The most columns a table may reach (`time` and `device` included); a record that would
    /// add columns past it is refused with that reason. Default 1000; at most 1600 (PostgreSQL's limit).
    #[serde(default = "crate::sql::default_max_columns")]
    pub max_columns: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMethod {
    #[default]
    Copy,
    Insert,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypertable {
    #[default]
    Auto,
    Off,
}

fn default_schema() -> String {
    "public".into()
}
fn default_pool_size() -> usize {
    2
}
fn default_max_statement_bytes() -> usize {
    16 << 20
}
fn default_chunk_interval() -> String {
    "1 day".into()
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}

impl PostgresConfig {
    /// The parsed connection settings.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, SinkError> {
        let mut c = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| SinkError::Config(format!("postgres sink: url: {e}")))?;
        c.connect_timeout(std::time::Duration::from_millis(self.connect_timeout_ms));
        Ok(c)
    }

    /// Whether the URL asks for TLS.
    pub fn tls(&self) -> Result<bool, SinkError> {
        Ok(self.pg_config()?.get_ssl_mode() == tokio_postgres::config::SslMode::Require)
    }
}

impl SinkConfig for PostgresConfig {
    /// Checks the options without connecting.
    fn validate(&self) -> Result<(), SinkError> {
        let bad = |m: String| Err(SinkError::Config(format!("postgres sink: {m}")));
        let tls = self.tls()?;
        if self.ca_file.is_some() && !tls {
            return bad("ca_file is set but the url does not ask for TLS: add ?sslmode=require".into());
        }
        if let Err(e) = ident::validate(&self.schema) {
            return bad(format!("schema: {e}"));
        }
        if !self.table_prefix.is_empty() {
            if let Err(e) = ident::validate(&self.table_prefix) {
                return bad(format!("table_prefix: {e}"));
            }
        }
        crate::sql::check_max_columns("postgres", self.max_columns, 1600)?;
        if self.max_statement_bytes < 1024 {
            return bad("max_statement_bytes must be at least 1024".into());
        }
        if self.pool_size == 0 {
            return bad("pool_size must be at least 1".into());
        }
        let interval = self.chunk_interval.trim();
        let ok = interval.split_whitespace().collect::<Vec<_>>().chunks(2).all(|pair| match pair {
            [n, unit] => {
                n.parse::<u32>().is_ok()
                    && ["second", "minute", "hour", "day", "week", "month"]
                        .iter()
                        .any(|u| unit.trim_end_matches('s') == *u)
            }
            _ => false,
        });
        if interval.is_empty() || !ok {
            return bad(format!(
                "chunk_interval {interval:?} is not an interval like \"1 day\" or \"6 hours\""
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> Result<PostgresConfig, serde_json::Error> {
        let mut v = serde_json::json!({"url": "postgresql://roost@127.0.0.1:5432/roost"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v)
    }

    #[test]
    fn defaults_and_validation() {
        let c = config(serde_json::json!({})).unwrap();
        assert_eq!((c.schema.as_str(), c.write_method, c.pool_size), ("public", WriteMethod::Copy, 2));
        c.validate().unwrap();
        for (extra, want) in [
            (serde_json::json!({"schema": "a;b"}), "schema"),
            (serde_json::json!({"table_prefix": "x-"}), "table_prefix"),
            (serde_json::json!({"chunk_interval": "1 day; DROP TABLE x"}), "chunk_interval"),
            (serde_json::json!({"pool_size": 0}), "pool_size"),
            (serde_json::json!({"max_columns": 1601}), "max_columns"),
            (serde_json::json!({"ca_file": "/etc/ca.pem"}), "sslmode=require"),
            (serde_json::json!({"url": "nonsense://"}), "url"),
        ] {
            let err = config(extra.clone()).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(want), "{extra}: {err}");
        }
        config(serde_json::json!({"chunk_interval": "6 hours"})).unwrap().validate().unwrap();
        let tls =
            config(serde_json::json!({"url": "postgresql://h/db?sslmode=require", "ca_file": "/ca.pem"}))
                .unwrap();
        tls.validate().unwrap();
        assert!(tls.tls().unwrap());
        assert!(config(serde_json::json!({"write_method": "bulk"})).is_err());
    }
}
