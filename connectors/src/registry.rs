//! The sink registry: one table of the kinds this build knows ([`KINDS`]), and a `[[sinks]]`
//! entry's options parsed once into its kind's typed config ([`SinkOptions`]).
//!
//! A new database is one folder under `src/` (its config implementing [`SinkConfig`], its sink
//! [`OpenSink`]) and one line in [`KINDS`], behind its cargo feature.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::export::{ExportError, OpenSource, Source};
use crate::{OpenSink, Sink, SinkConfig, SinkContext, SinkError};

/// Every sink kind this build knows, in the order errors list them.
pub const KINDS: &[Kind] = &[
    #[cfg(feature = "sqlite")]
    kind::<crate::sqlite::SqliteSink>("sqlite"),
    #[cfg(feature = "postgres")]
    kind::<crate::postgres::PostgresSink>("postgres"),
    #[cfg(feature = "postgres")]
    kind::<crate::postgres::PostgresSink>("timescaledb"),
    #[cfg(feature = "mysql")]
    kind::<crate::mysql::MysqlSink>("mysql"),
    #[cfg(feature = "influxdb")]
    kind::<crate::influxdb::InfluxSink>("influxdb"),
    #[cfg(feature = "mongodb")]
    kind::<crate::mongodb::MongoSink>("mongodb"),
];

/// One sink kind: the name `kind = "..."` selects, and how its options are parsed.
#[derive(Clone, Copy)]
pub struct Kind {
    pub name: &'static str,
    parse: fn(&Value) -> Result<Arc<dyn Options>, serde_json::Error>,
}

/// The kind `name`: options parsed as `S::Config`, the sink opened by `S`, its database read
/// back by `S::Config` ([`OpenSource`]).
#[allow(dead_code)] // in a build without any database feature
const fn kind<S: OpenSink>(name: &'static str) -> Kind
where
    S::Config: OpenSource,
{
    Kind { name, parse: parse::<S> }
}

/// A `[[sinks]]` entry's own options (everything but `name`, `kind` and the batching options),
/// parsed into its kind's typed config. Parse once when the settings load; validate and open
/// from this.
#[derive(Clone)]
pub struct SinkOptions {
    kind: &'static str,
    config: Arc<dyn Options>,
}

impl SinkOptions {
    /// Parses `options` as the config of `kind`: an unknown kind is an error listing the kinds
    /// that exist, an unknown or mistyped option one naming it.
    pub fn parse(kind: &str, options: &Value) -> Result<SinkOptions, SinkError> {
        let Some(found) = KINDS.iter().find(|k| k.name == kind) else {
            let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
            return Err(SinkError::Config(format!(
                "unknown sink kind {kind:?}; expected one of: {}",
                names.join(", ")
            )));
        };
        let config = (found.parse)(options).map_err(|e| SinkError::Config(format!("{kind} sink: {e}")))?;
        Ok(SinkOptions { kind: found.name, config })
    }

    /// The kind, as named in config.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Checks the options without touching the database.
    pub fn validate(&self) -> Result<(), SinkError> {
        self.config.validate()
    }

    /// The options with every default filled in, as `roost config check` shows them. Secrets
    /// are in the clear: redact before printing.
    pub fn effective(&self) -> Value {
        self.config.effective()
    }

    /// Builds the sink (connecting, or opening its file, as its kind does).
    pub async fn open(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        self.config.open(self.kind, ctx).await
    }

    /// Opens the read side of the sink's database (`roost export`), connecting as the sink does.
    pub async fn open_source(&self, ctx: &SinkContext) -> Result<Box<dyn Source>, ExportError> {
        self.config.source(self.kind, ctx).await
    }
}

impl fmt::Debug for SinkOptions {
    /// The kind only: options may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkOptions").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Builds a sink of `kind` from its options: [`SinkOptions::parse`], then [`SinkOptions::open`].
pub async fn open(kind: &str, options: &Value, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
    SinkOptions::parse(kind, options)?.open(ctx).await
}

/// A kind's [`SinkConfig`] and [`OpenSink`] with the sink's type erased, so one table holds
/// every kind.
#[async_trait]
trait Options: Send + Sync {
    fn validate(&self) -> Result<(), SinkError>;
    fn effective(&self) -> Value;
    async fn open(&self, kind: &'static str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;
    async fn source(&self, kind: &'static str, ctx: &SinkContext) -> Result<Box<dyn Source>, ExportError>;
}

/// The options of a sink of type `S`.
struct Typed<S: OpenSink> {
    config: S::Config,
    sink: PhantomData<fn() -> S>,
}

#[async_trait]
impl<S: OpenSink> Options for Typed<S>
where
    S::Config: OpenSource,
{
    fn validate(&self) -> Result<(), SinkError> {
        self.config.validate()
    }

    fn effective(&self) -> Value {
        // A struct of plain fields always serializes; `Null` only shows nothing.
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    async fn open(&self, kind: &'static str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(S::open(self.config.clone(), kind, ctx).await?))
    }

    async fn source(&self, kind: &'static str, ctx: &SinkContext) -> Result<Box<dyn Source>, ExportError> {
        self.config.open_source(kind, ctx).await
    }
}

fn parse<S: OpenSink>(options: &Value) -> Result<Arc<dyn Options>, serde_json::Error>
where
    S::Config: OpenSource,
{
    let config = S::Config::deserialize(options)?;
    Ok(Arc::new(Typed::<S> { config, sink: PhantomData }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names() -> String {
        KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
    }

    #[test]
    fn unknown_kind_lists_the_kinds_that_exist() {
        let err = SinkOptions::parse("influx", &json!({})).unwrap_err();
        assert_eq!(err.to_string(), format!("unknown sink kind \"influx\"; expected one of: {}", names()));
    }

    #[test]
    fn every_kind_is_in_the_table_once_in_order() {
        let expected: &[(&str, bool)] = &[
            ("sqlite", cfg!(feature = "sqlite")),
            ("postgres", cfg!(feature = "postgres")),
            ("timescaledb", cfg!(feature = "postgres")),
            ("mysql", cfg!(feature = "mysql")),
            ("influxdb", cfg!(feature = "influxdb")),
            ("mongodb", cfg!(feature = "mongodb")),
        ];
        let built: Vec<&str> = expected.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
        assert_eq!(names(), built.join(", "));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn unknown_option_is_named() {
        let err = SinkOptions::parse("sqlite", &json!({"pth": "x.db"})).unwrap_err();
        assert!(err.to_string().contains("sqlite sink: unknown field `pth`"), "{err}");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn options_are_parsed_once_with_their_defaults() {
        let options = SinkOptions::parse("sqlite", &json!({"path": "x.db"})).unwrap();
        assert_eq!(options.kind(), "sqlite");
        options.validate().unwrap();
        assert_eq!(
            options.effective(),
            json!({"path": "x.db", "synchronous": "normal", "busy_timeout_ms": 5000, "max_columns": 1000})
        );
        let bad = SinkOptions::parse("sqlite", &json!({"path": ""})).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("does not name a file"));
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn one_config_serves_two_kinds() {
        let options = json!({"url": "postgres://roost@localhost/roost"});
        for kind in ["postgres", "timescaledb"] {
            let parsed = SinkOptions::parse(kind, &options).unwrap();
            assert_eq!(parsed.kind(), kind);
            parsed.validate().unwrap();
        }
    }
}
