//! Options of the `mysql` sink.

use roost_core::ident;
use serde::{Deserialize, Serialize};

use crate::{SinkConfig, SinkError};

/// `[[sinks]]` options for `kind = "mysql"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port/database` (the database must exist). TLS:
    /// `?require_ssl=true`.
    pub url: String,
    /// Prepended to each measurement to name its table.
    #[serde(default)]
    pub table_prefix: String,
    /// Connections kept open; one write is in flight per sink.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The most columns a table may reach (`time` and `device` included); a record that would
    /// add columns past it is refused with that reason. Default 1000; at most 1017 (InnoDB's limit).
    #[serde(default = "crate::sql::default_max_columns")]
    pub max_columns: usize,
}

fn default_pool_size() -> usize {
    2
}

impl MysqlConfig {
    pub fn opts(&self) -> Result<mysql_async::Opts, SinkError> {
        let opts = mysql_async::Opts::from_url(&self.url)
            .map_err(|e| SinkError::Config(format!("mysql sink: url: {e}")))?;
        if opts.db_name().is_none_or(str::is_empty) {
            return Err(SinkError::Config(
                "mysql sink: the url must name a database (mysql://host/db)".into(),
            ));
        }
        Ok(opts)
    }
}

impl SinkConfig for MysqlConfig {
    /// Checks the options without connecting.
    fn validate(&self) -> Result<(), SinkError> {
        self.opts()?;
        if !self.table_prefix.is_empty() {
            ident::validate(&self.table_prefix)
                .map_err(|e| SinkError::Config(format!("mysql sink: table_prefix: {e}")))?;
        }
        crate::sql::check_max_columns("mysql", self.max_columns, 1017)?;
        if self.pool_size == 0 {
            return Err(SinkError::Config("mysql sink: pool_size must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_must_name_a_database() {
        let c = |url: &str| MysqlConfig {
            url: url.into(),
            table_prefix: String::new(),
            pool_size: 2,
            max_columns: crate::sql::DEFAULT_MAX_COLUMNS,
        };
        c("mysql://root@127.0.0.1:3306/roost").validate().unwrap();
        assert!(c("mysql://root@127.0.0.1:3306").validate().unwrap_err().to_string().contains("database"));
        assert!(c("postgres://x/y").validate().is_err());
        let bad = MysqlConfig { table_prefix: "a`b".into(), ..c("mysql://h/db") };
        assert!(bad.validate().unwrap_err().to_string().contains("table_prefix"));
    }
}
