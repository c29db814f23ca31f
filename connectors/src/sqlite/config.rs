//! Options of the `sqlite` sink.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{SinkConfig, SinkContext, SinkError};

/// `[[sinks]]` options for `kind = "sqlite"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file; relative to the data directory. Default `roost.db`.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// SQLite's `synchronous` setting: `normal` (default; with WAL, safe against a crash of
    /// Roost, not of the machine), `full` (also against power loss), `off`.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// How long a write waits for another writer's lock, in milliseconds. Default 5000.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
    /// The most columns a table may reach (`time` and `device` included); a record that would
    /// add columns past it is refused with that reason. Default 1000; at most 2000 (SQLite's limit).
    #[serde(default = "crate::sql::default_max_columns")]
    pub max_columns: usize,
}

/// SQLite's `PRAGMA synchronous` levels that make sense with WAL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Off,
    #[default]
    Normal,
    Full,
}

fn default_path() -> PathBuf {
    PathBuf::from("roost.db")
}

fn default_busy_timeout_ms() -> u64 {
    5000
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: default_path(),
            synchronous: Synchronous::default(),
            busy_timeout_ms: default_busy_timeout_ms(),
            max_columns: crate::sql::DEFAULT_MAX_COLUMNS,
        }
    }
}

impl SqliteConfig {
    /// The database file this config names, resolved against the data directory.
    pub fn file(&self, ctx: &SinkContext) -> PathBuf {
        if self.path.is_absolute() {
            self.path.clone()
        } else {
            ctx.data_dir.join(&self.path)
        }
    }
}

impl SinkConfig for SqliteConfig {
    /// Checks the options without opening the file.
    fn validate(&self) -> Result<(), SinkError> {
        crate::sql::check_max_columns("sqlite", self.max_columns, 2000)?;
        let p = &self.path;
        if p.as_os_str().is_empty() || p.file_name().is_none() {
            return Err(SinkError::Config(format!("sqlite sink: path {p:?} does not name a file")));
        }
        Ok(())
    }
}
