//! Options of the `mongodb` sink.

use roost_core::ident;
use serde::{Deserialize, Serialize};

use crate::{SinkConfig, SinkError};

/// `[[sinks]]` options for `kind = "mongodb"`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoConfig {
    /// A MongoDB connection string, `mongodb://user:password@host:27017/?directConnection=true`
    /// (`mongodb+srv://` works too). Driver options (`serverSelectionTimeoutMS`, `tls`, ...) go
    /// in its query string.
    pub url: String,
    /// The database collections are created in.
    pub database: String,
    /// Create each new collection as a time-series collection (`timeField: "time"`,
    /// `metaField: "meta"`); when the server refuses, a plain collection is made instead.
    #[serde(default)]
    pub timeseries: bool,
    /// Prepended to each measurement to name its collection.
    #[serde(default)]
    pub collection_prefix: String,
}

// The url may hold a password: Debug shows only what is safe.
impl std::fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoConfig")
            .field("url", &"***")
            .field("database", &self.database)
            .field("timeseries", &self.timeseries)
            .field("collection_prefix", &self.collection_prefix)
            .finish()
    }
}

impl SinkConfig for MongoConfig {
    /// Checks the options without connecting.
    fn validate(&self) -> Result<(), SinkError> {
        // The parser's messages do not repeat the password.
        mongodb::options::ConnectionString::parse(&self.url)
            .map_err(|e| SinkError::Config(format!("mongodb sink: url: {}", e.kind)))?;
        if self.database.is_empty()
            || self.database.len() > 63
            || self.database.contains(['/', '\\', '.', ' ', '"', '$', '\0'])
        {
            return Err(SinkError::Config(format!(
                "mongodb sink: database {:?} is not a valid MongoDB database name",
                self.database
            )));
        }
        if !self.collection_prefix.is_empty() {
            ident::validate(&self.collection_prefix)
                .map_err(|e| SinkError::Config(format!("mongodb sink: collection_prefix: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<MongoConfig, String> {
        let c: MongoConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn url_database_and_prefix_are_checked_without_connecting() {
        let c = parse(
            serde_json::json!({"url": "mongodb://u:hunter2@h:1/?directConnection=true", "database": "roost"}),
        )
        .unwrap();
        assert!(!c.timeseries);
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = |v| parse(v).unwrap_err();
        assert!(err(serde_json::json!({"url": "http://h", "database": "d"})).contains("url"));
        assert!(err(serde_json::json!({"url": "mongodb://h", "database": "a.b"})).contains("database"));
        assert!(err(serde_json::json!({"url": "mongodb://h", "database": "d", "collection_prefix": "x-"}))
            .contains("prefix"));
        assert!(err(serde_json::json!({"url": "mongodb://h", "database": "d", "time_series": true}))
            .contains("unknown field"));
    }
}
