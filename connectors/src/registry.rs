//! The sink registry: which kinds exist and how each is built from its options.
//!
//! A new database is one folder plus one arm in [`validate`] and [`open`] and one name in
//! [`KINDS`].

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Sink, SinkError};

/// Every sink kind this build knows.
pub const KINDS: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "postgres")]
    "timescaledb",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "influxdb")]
    "influxdb",
    #[cfg(feature = "mongodb")]
    "mongodb",
];

/// What a sink may need from the server to open.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// Roost's data directory; relative paths in sink options are resolved against it.
    pub data_dir: PathBuf,
}

/// Checks a sink's options without touching the database.
pub fn validate(kind: &str, options: &Value, ctx: &SinkContext) -> Result<(), SinkError> {
    match kind {
        #[cfg(feature = "sqlite")]
        "sqlite" => parse::<crate::sqlite::SqliteConfig>(kind, options)?.validate(ctx),
        #[cfg(feature = "postgres")]
        "postgres" | "timescaledb" => parse::<crate::postgres::PostgresConfig>(kind, options)?.validate(),
        #[cfg(feature = "mysql")]
        "mysql" => parse::<crate::mysql::MysqlConfig>(kind, options)?.validate(),
        #[cfg(feature = "influxdb")]
        "influxdb" => parse::<crate::influxdb::InfluxConfig>(kind, options)?.validate(),
        #[cfg(feature = "mongodb")]
        "mongodb" => parse::<crate::mongodb::MongoConfig>(kind, options)?.validate(),
        _ => Err(unknown_kind(kind)),
    }
}

/// The sink's options with every default filled in, as `roost config check` shows them.
pub fn effective_options(kind: &str, options: &Value) -> Result<Value, SinkError> {
    let to_value =
        |r: Result<Value, serde_json::Error>| r.map_err(|e| SinkError::Config(format!("{kind} sink: {e}")));
    match kind {
        #[cfg(feature = "sqlite")]
        "sqlite" => to_value(serde_json::to_value(parse::<crate::sqlite::SqliteConfig>(kind, options)?)),
        #[cfg(feature = "postgres")]
        "postgres" | "timescaledb" => {
            to_value(serde_json::to_value(parse::<crate::postgres::PostgresConfig>(kind, options)?))
        }
        #[cfg(feature = "mysql")]
        "mysql" => to_value(serde_json::to_value(parse::<crate::mysql::MysqlConfig>(kind, options)?)),
        #[cfg(feature = "influxdb")]
        "influxdb" => to_value(serde_json::to_value(parse::<crate::influxdb::InfluxConfig>(kind, options)?)),
        #[cfg(feature = "mongodb")]
        "mongodb" => to_value(serde_json::to_value(parse::<crate::mongodb::MongoConfig>(kind, options)?)),
        _ => Err(unknown_kind(kind)),
    }
}

/// Builds and connects a sink of `kind` from its options.
pub async fn open(kind: &str, options: &Value, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
    match kind {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let config: crate::sqlite::SqliteConfig = parse(kind, options)?;
            Ok(Box::new(crate::sqlite::SqliteSink::open(config, ctx).await?))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            Ok(Box::new(crate::postgres::PostgresSink::open("postgres", parse(kind, options)?).await?))
        }
        #[cfg(feature = "postgres")]
        "timescaledb" => {
            Ok(Box::new(crate::postgres::PostgresSink::open("timescaledb", parse(kind, options)?).await?))
        }
        #[cfg(feature = "mysql")]
        "mysql" => Ok(Box::new(crate::mysql::MysqlSink::open(parse(kind, options)?).await?)),
        #[cfg(feature = "influxdb")]
        "influxdb" => Ok(Box::new(crate::influxdb::InfluxSink::open(parse(kind, options)?).await?)),
        #[cfg(feature = "mongodb")]
        "mongodb" => Ok(Box::new(crate::mongodb::MongoSink::open(parse(kind, options)?).await?)),
        _ => Err(unknown_kind(kind)),
    }
}

fn parse<T: DeserializeOwned>(kind: &str, options: &Value) -> Result<T, SinkError> {
    T::deserialize(options).map_err(|e| SinkError::Config(format!("{kind} sink: {e}")))
}

fn unknown_kind(kind: &str) -> SinkError {
    SinkError::Config(format!("unknown sink kind {kind:?}; expected one of: {}", KINDS.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_lists_the_kinds_that_exist() {
        let ctx = SinkContext { data_dir: PathBuf::from("/tmp") };
        let err = validate("influx", &Value::Object(Default::default()), &ctx).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unknown sink kind \"influx\"; expected one of: {}", KINDS.join(", "))
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn unknown_option_is_named() {
        let ctx = SinkContext { data_dir: PathBuf::from("/tmp") };
        let err = validate("sqlite", &serde_json::json!({"pth": "x.db"}), &ctx).unwrap_err();
        assert!(err.to_string().contains("unknown field `pth`"), "{err}");
    }
}
