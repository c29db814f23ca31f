//! Roost's settings: one typed tree, loaded in layers by the `config` crate.
//!
//! Layers, later ones winning: the defaults embedded in the binary (`default.toml`), the file
//! given with `--config`, the environment (`ROOST__SECTION__KEY`, double underscores between
//! levels), then command-line flags. Unknown keys and bad values are errors that name the key
//! and where it came from. Each sink's options are parsed once, as the settings load, into its
//! kind's typed config ([`SinkSpec`]); [`Settings::validate`] checks everything that can be
//! checked without I/O; [`Settings::redacted`] is what `roost config check` prints.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use roost_connectors::SinkOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

mod mqtt;
pub use mqtt::{MqttRetainSettings, MqttSessionSettings, MqttSettings, MqttTlsSettings};

/// The defaults compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// Why settings could not be loaded or are not valid.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{0}")]
    Load(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where Roost keeps its database, token and state.
    pub data_dir: PathBuf,
    /// How long a stop may take to drain and flush before Roost gives up and exits non-zero.
    pub shutdown_timeout_secs: u64,
    pub mqtt: MqttSettings,
    pub api: ApiSettings,
    /// The databases records go to, as the layers give them. Each entry: `name`, `kind`,
    /// optional `batch_size` and `linger_ms`, then the kind's own options. Parsed once, when the
    /// settings load, into [`Settings::sink_specs`].
    #[serde(default)]
    sinks: Vec<Map<String, Value>>,
    /// The sinks, parsed from `sinks` (the default SQLite sink when there is none).
    #[serde(skip)]
    sink_specs: Vec<SinkSpec>,
    #[serde(default)]
    pub pipelines: Vec<PipelineSettings>,
    /// `[spool]`: each sink's queue on disk.
    #[serde(default)]
    pub spool: crate::sink::settings::SpoolSettings,
    /// `[deadletter]`: the store of what could not be written or mapped.
    #[serde(default)]
    pub deadletter: crate::deadletter::DeadLetterSettings,
    /// `[boards]`: the board command channel.
    #[serde(default)]
    pub boards: crate::boards::BoardSettings,
    /// `[acl]`: what registered devices may publish and subscribe to.
    #[serde(default)]
    pub acl: crate::devices::rules::DeviceAcl,
    /// `[processors]`: limits and workers for WebAssembly processors.
    pub processors: ProcessorSettings,
}

/// `[processors]`: how user processors run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSettings {
    /// Worker threads per pipeline that has a processor.
    pub workers: usize,
    /// CPU budget per message, in milliseconds.
    pub cpu_budget_ms: u64,
    /// Budget for starting an instance and running its `init`, in milliseconds.
    pub init_budget_ms: u64,
    /// Memory an instance may grow to, in MiB.
    pub memory_mib: usize,
    /// Records one message may produce.
    pub max_records: usize,
    /// Bytes of records one message may produce, in KiB.
    pub max_output_kib: usize,
    /// The largest `.wasm` upload, in MiB.
    pub max_upload_mib: usize,
}

impl ProcessorSettings {
    pub fn limits(&self) -> roost_processors::wasm::Limits {
        roost_processors::wasm::Limits {
            cpu_budget: std::time::Duration::from_millis(self.cpu_budget_ms),
            init_budget: std::time::Duration::from_millis(self.init_budget_ms),
            memory_bytes: self.memory_mib << 20,
            max_records: self.max_records,
            max_output_bytes: self.max_output_kib << 10,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            ("workers", self.workers as u64, 1, 256),
            ("cpu_budget_ms", self.cpu_budget_ms, 1, 600_000),
            ("init_budget_ms", self.init_budget_ms, 1, 600_000),
            ("memory_mib", self.memory_mib as u64, 1, 4095),
            ("max_records", self.max_records as u64, 1, 10_000_000),
            ("max_output_kib", self.max_output_kib as u64, 1, 1 << 20),
            ("max_upload_mib", self.max_upload_mib as u64, 1, 1024),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key: format!("processors.{key}"),
                    message: format!("{value} is out of range ({min}..={max})"),
                });
            }
        }
        Ok(())
    }
}

/// A pipeline's processor: a name (following the active version), or a table with a pinned
/// version and the config string passed to its `init`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ProcessorRef {
    Name(String),
    Table(ProcessorTable),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessorTable {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    pub config: String,
}

impl ProcessorRef {
    pub fn name(&self) -> &str {
        match self {
            ProcessorRef::Name(n) => n,
            ProcessorRef::Table(t) => &t.name,
        }
    }
    pub fn version(&self) -> Option<u32> {
        match self {
            ProcessorRef::Name(_) => None,
            ProcessorRef::Table(t) => t.version,
        }
    }
    pub fn config(&self) -> &str {
        match self {
            ProcessorRef::Name(_) => "",
            ProcessorRef::Table(t) => &t.config,
        }
    }
}

/// `[api]`: the admin HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// `[api.tls]`: serve HTTPS instead of HTTP.
    #[serde(default)]
    pub tls: Option<ApiTlsSettings>,
}

/// `[api.tls]`: the admin API over HTTPS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsSettings {
    /// PEM files: the server's certificate (chain) and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM file of the CA that signed `cert`, which the `roost` commands trust when they call
    /// the API (not needed for a certificate from a public CA).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// One `[[pipelines]]` entry: which topics go through which processing into which sinks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    pub name: String,
    /// MQTT topic filters (`+`, `#` wildcards).
    pub topics: Vec<String>,
    /// Names of `[[sinks]]` entries. Empty: records are produced and counted, then dropped.
    #[serde(default)]
    pub sinks: Vec<String>,
    /// The processor messages go through; none: the built-in JSON mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<ProcessorRef>,
}

/// One sink: its common options taken out of its `[[sinks]]` table, and the rest parsed into
/// its kind's typed config.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    /// A batch is written when it holds this many records...
    pub batch_size: usize,
    /// ...or when its first record has waited this long.
    pub linger_ms: u64,
    /// The kind and everything else in the table: the kind's own options, typed.
    pub options: SinkOptions,
}

pub const DEFAULT_BATCH_SIZE: usize = 5000;
pub const DEFAULT_LINGER_MS: u64 = 200;

/// Command-line values that override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub mqtt_listen: Option<String>,
    pub api_listen: Option<String>,
}

impl Settings {
    /// Loads the layers: defaults, `file`, the environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File { path: path.into(), message: "no such file".into() });
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("ROOST").prefix_separator("__").separator("__").try_parsing(true),
        );
        let set = |b: config::ConfigBuilder<_>, key: &str, v: Option<String>| match v {
            Some(v) => b.set_override(key, v),
            None => Ok(b),
        };
        let to_load = |e: config::ConfigError| ConfigError::Load(e.to_string());
        builder = set(builder, "data_dir", overrides.data_dir.as_ref().map(|p| p.display().to_string()))
            .map_err(to_load)?;
        builder = set(builder, "mqtt.listen", overrides.mqtt_listen.clone()).map_err(to_load)?;
        builder = set(builder, "api.listen", overrides.api_listen.clone()).map_err(to_load)?;

        let raw = builder.build().map_err(|e| locate(e, file))?;
        Settings::from_layers(raw, file)
    }

    /// The settings from the merged layers: deserialized, sinks parsed, then validated.
    fn from_layers(raw: Config, file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut settings: Settings = raw.try_deserialize().map_err(|e| locate(e, file))?;
        settings.sink_specs = if settings.sinks.is_empty() {
            let options = SinkOptions::parse("sqlite", &Value::Object(Map::new()))
                .map_err(|e| ConfigError::Invalid { key: "sinks".into(), message: e.to_string() })?;
            vec![SinkSpec {
                name: "sqlite".into(),
                batch_size: DEFAULT_BATCH_SIZE,
                linger_ms: DEFAULT_LINGER_MS,
                options,
            }]
        } else {
            settings
                .sinks
                .iter()
                .enumerate()
                .map(|(i, table)| SinkSpec::from_table(i, table))
                .collect::<Result<_, _>>()?
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The sinks, with the default SQLite sink when none is configured.
    pub fn sink_specs(&self) -> &[SinkSpec] {
        &self.sink_specs
    }

    /// The pipelines, with the default `devices/#` pipeline into every sink when none is
    /// configured.
    pub fn pipeline_specs(&self) -> Vec<PipelineSettings> {
        if !self.pipelines.is_empty() {
            return self.pipelines.clone();
        }
        vec![PipelineSettings {
            name: "default".into(),
            topics: vec!["devices/#".into()],
            sinks: self.sink_specs.iter().map(|s| s.name.clone()).collect(),
            processor: None,
        }]
    }

    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid { key, message };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir".into(), "must not be empty".into()));
        }
        self.mqtt.validate().map_err(|(key, m)| invalid(key.into(), m))?;
        self.boards.validate().map_err(|m| invalid("boards".into(), m))?;
        self.acl.validate().map_err(|(key, m)| invalid(key, m))?;
        self.spool.check().map_err(|(key, m)| invalid(key.into(), m))?;
        self.processors.validate()?;
        let mut names = HashSet::new();
        for (i, sink) in self.sink_specs.iter().enumerate() {
            if !names.insert(sink.name.as_str()) {
                return Err(invalid(format!("sinks[{i}].name"), format!("{:?} is used twice", sink.name)));
            }
            sink.options
                .validate()
                .map_err(|e| invalid(format!("sinks[{i}] ({})", sink.name), e.to_string()))?;
        }
        let mut pipeline_names = HashSet::new();
        for (i, p) in self.pipeline_specs().iter().enumerate() {
            if p.name.is_empty() {
                return Err(invalid(format!("pipelines[{i}].name"), "must not be empty".into()));
            }
            if !pipeline_names.insert(p.name.as_str().to_owned()) {
                return Err(invalid(format!("pipelines[{i}].name"), format!("{:?} is used twice", p.name)));
            }
            if p.topics.is_empty() {
                return Err(invalid(
                    format!("pipelines[{i}].topics"),
                    "needs at least one topic filter".into(),
                ));
            }
            for t in &p.topics {
                roost_core::topic::validate_filter(t)
                    .map_err(|e| invalid(format!("pipelines[{i}].topics"), e.to_string()))?;
            }
            if let Some(processor) = &p.processor {
                roost_processors::wasm::check_name(processor.name())
                    .map_err(|e| invalid(format!("pipelines[{i}].processor"), e.to_string()))?;
            }
            for s in &p.sinks {
                if !names.contains(s.as_str()) {
                    let known: Vec<&str> = names.iter().copied().collect();
                    return Err(invalid(
                        format!("pipelines[{i}].sinks"),
                        format!("no sink named {s:?}; sinks are: {}", known.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The effective settings as TOML, with passwords, tokens and URL credentials masked.
    pub fn redacted(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            let sinks = self.sink_specs.iter().map(|s| {
                let mut table = Map::new();
                table.insert("name".into(), s.name.clone().into());
                table.insert("kind".into(), s.options.kind().into());
                table.insert("batch_size".into(), s.batch_size.into());
                table.insert("linger_ms".into(), s.linger_ms.into());
                if let Value::Object(options) = s.options.effective() {
                    table.extend(options);
                }
                Value::Object(table)
            });
            map.insert("sinks".into(), Value::Array(sinks.collect()));
            map.insert(
                "pipelines".into(),
                serde_json::to_value(self.pipeline_specs()).unwrap_or(Value::Null),
            );
        }
        redact(&mut value);
        drop_nulls(&mut value);
        match toml::to_string_pretty(&value) {
            Ok(s) => s,
            Err(e) => format!("# could not render settings: {e}\n"),
        }
    }
}

impl SinkSpec {
    fn from_table(i: usize, table: &Map<String, Value>) -> Result<SinkSpec, ConfigError> {
        let key = |k: &str| format!("sinks[{i}].{k}");
        let invalid = |k: &str, message: &str| ConfigError::Invalid { key: key(k), message: message.into() };
        let mut options = table.clone();
        let mut string = |k: &str| match options.remove(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(invalid(k, "must be a non-empty string")),
            None => Err(invalid(k, "is required")),
        };
        let name = string("name")?;
        let kind = string("kind")?;
        let mut number = |k: &str, default: u64| match options.remove(k) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(k, "must be a positive whole number")),
        };
        let batch_size = number("batch_size", DEFAULT_BATCH_SIZE as u64)? as usize;
        let linger_ms = number("linger_ms", DEFAULT_LINGER_MS)?;
        let options = SinkOptions::parse(&kind, &Value::Object(options)).map_err(|e| {
            ConfigError::Invalid { key: format!("sinks[{i}] ({name})"), message: e.to_string() }
        })?;
        Ok(SinkSpec { name, batch_size, linger_ms, options })
    }
}

/// Says where a `config` crate error came from: the file, the environment, or either.
fn locate(e: config::ConfigError, file: Option<&Path>) -> ConfigError {
    let message = e.to_string();
    let env_used = std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("ROOST__"));
    match (file, env_used) {
        (Some(path), false) => ConfigError::File { path: path.into(), message },
        (Some(path), true) => ConfigError::File {
            path: path.into(),
            message: format!("{message} (set in this file or in a ROOST__* environment variable)"),
        },
        (None, true) => ConfigError::Load(format!("ROOST__* environment variables: {message}")),
        (None, false) => ConfigError::Load(message),
    }
}

/// Masks values whose key says they are secret, and credentials inside URLs.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                let secret = ["password", "token", "secret", "private_key"].iter().any(|s| k.contains(s));
                if secret && !val.is_null() {
                    *val = Value::String("***".into());
                } else if let Value::String(s) = val {
                    *s = redact_url(s);
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Removes unset (null) entries, which TOML cannot express.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, val| !val.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// `scheme://user:pass@host` -> `scheme://user:***@host`; anything else unchanged.
fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return s.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let raw =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml)).build().unwrap();
        let s = Settings::from_layers(raw, None).unwrap();
        assert_eq!(s.mqtt.listen, "127.0.0.1:1883".parse().unwrap());
        assert!(s.mqtt.anonymous_allowed());
        assert_eq!(s.api.listen, "127.0.0.1:8080".parse().unwrap());
        let sinks = s.sink_specs();
        assert_eq!(sinks.len(), 1);
        assert_eq!((sinks[0].name.as_str(), sinks[0].options.kind()), ("sqlite", "sqlite"));
        let p = s.pipeline_specs();
        assert_eq!(p[0].topics, ["devices/#"]);
        assert_eq!(p[0].sinks, ["sqlite"]);
    }

    #[test]
    fn sink_tables_split_common_and_kind_options() {
        let table: Map<String, Value> =
            serde_json::from_str(r#"{"name":"db","kind":"sqlite","batch_size":100,"path":"x.db"}"#).unwrap();
        let spec = SinkSpec::from_table(0, &table).unwrap();
        assert_eq!(spec.batch_size, 100);
        assert_eq!(spec.linger_ms, DEFAULT_LINGER_MS);
        assert_eq!(spec.options.kind(), "sqlite");
        assert_eq!(spec.options.effective()["path"], "x.db");
        let table: Map<String, Value> = serde_json::from_str(r#"{"kind":"sqlite"}"#).unwrap();
        assert_eq!(
            SinkSpec::from_table(3, &table).unwrap_err().to_string(),
            "invalid setting sinks[3].name: is required"
        );
        let table: Map<String, Value> = serde_json::from_str(r#"{"name":"db","kind":"influx"}"#).unwrap();
        let kinds: Vec<&str> = roost_connectors::KINDS.iter().map(|k| k.name).collect();
        assert_eq!(
            SinkSpec::from_table(0, &table).unwrap_err().to_string(),
            format!(
                "invalid setting sinks[0] (db): unknown sink kind \"influx\"; expected one of: {}",
                kinds.join(", ")
            )
        );
        let table: Map<String, Value> =
            serde_json::from_str(r#"{"name":"db","kind":"sqlite","pth":"x.db"}"#).unwrap();
        let err = SinkSpec::from_table(1, &table).unwrap_err().to_string();
        assert!(err.starts_with("invalid setting sinks[1] (db): sqlite sink: unknown field `pth`"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut v = serde_json::json!({"url":"postgres://roost:hunter2@db:5432/x","token":"abc","nested":[{"password":"p"}],"path":"a"});
        redact(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"url":"postgres://roost:***@db:5432/x","token":"***","nested":[{"password":"***"}],"path":"a"})
        );
    }
}
