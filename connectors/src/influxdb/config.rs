//! Options of the `influxdb` sink.

use roost_core::ident;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::{SinkConfig, SinkError};

/// `[[sinks]]` options for `kind = "influxdb"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// The server's base URL, `http://host:8086` (a path prefix is kept: `https://host/influx`).
    /// Credentials go in `username`/`password` or `token`, never in the URL.
    pub url: String,
    /// `v1`: `POST /write?db=&rp=` (InfluxDB 1.x, VictoriaMetrics, InfluxDB 2.x/3.x compatibility
    /// API); `v2`: `POST /api/v2/write?org=&bucket=` (InfluxDB 2.x/3.x, VictoriaMetrics).
    #[serde(default)]
    pub api: Api,
    /// v1: the database (created on first use if the server says it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// v1: the retention policy; the database's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rp: Option<String>,
    /// v1: sent with HTTP basic auth when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// v2: the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// v2: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// v2: sent as `Authorization: Token ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Prepended to each measurement.
    #[serde(default)]
    pub measurement_prefix: String,
    /// `write`: string fields are sent as line-protocol strings (InfluxDB stores them);
    /// `reject`: a record with a string field is refused (to the dead-letter store). Use `reject`
    /// with VictoriaMetrics, which stores only numbers and would turn a string into 0.
    #[serde(default)]
    pub string_fields: StringFields,
    /// The largest request body before compression, in bytes; a batch is split into requests
    /// under it (InfluxDB 1.x refuses bodies over 25 MB by default).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Compress request bodies with gzip.
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// How long one HTTP request may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The longest `Retry-After` (429/503) the sink waits out inside one write, in milliseconds;
    /// a longer one, or the third refusal in a row, hands the batch back to be retried later.
    #[serde(default = "default_max_retry_wait_ms")]
    pub max_retry_wait_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    #[default]
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StringFields {
    #[default]
    Write,
    Reject,
}

fn default_max_body_bytes() -> usize {
    4 << 20
}
fn default_gzip() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_retry_wait_ms() -> u64 {
    5_000
}

impl InfluxConfig {
    /// The write endpoint with its query string.
    pub fn write_url(&self) -> Result<reqwest::Url, SinkError> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|e| SinkError::Config(format!("influxdb sink: url: {e}")))?;
        let path = url.path().trim_end_matches('/').to_owned();
        match self.api {
            Api::V1 => {
                url.set_path(&format!("{path}/write"));
                let mut q = url.query_pairs_mut();
                q.append_pair("db", self.db.as_deref().unwrap_or_default());
                if let Some(rp) = self.rp.as_deref().filter(|rp| !rp.is_empty()) {
                    q.append_pair("rp", rp);
                }
                q.append_pair("precision", "ns");
            }
            Api::V2 => {
                url.set_path(&format!("{path}/api/v2/write"));
                let mut q = url.query_pairs_mut();
                q.append_pair("org", self.org.as_deref().unwrap_or_default());
                q.append_pair("bucket", self.bucket.as_deref().unwrap_or_default());
                q.append_pair("precision", "ns");
            }
        }
        Ok(url)
    }

    /// The v1 query endpoint (used to create the database).
    pub fn query_url(&self) -> Result<reqwest::Url, SinkError> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|e| SinkError::Config(format!("influxdb sink: url: {e}")))?;
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{path}/query"));
        Ok(url)
    }
}

impl SinkConfig for InfluxConfig {
    /// Checks the options without connecting.
    fn validate(&self) -> Result<(), SinkError> {
        let bad = |m: String| Err(SinkError::Config(format!("influxdb sink: {m}")));
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| SinkError::Config(format!("influxdb sink: url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return bad(format!("url: scheme must be http or https, not {:?}", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad("url: put credentials in username/password (v1) or token (v2), not in the url".into());
        }
        if url.query().is_some() {
            return bad("url: must not have a query string; the sink builds it".into());
        }
        let blank = |o: &Option<String>| o.as_deref().is_none_or(str::is_empty);
        match self.api {
            Api::V1 => {
                if blank(&self.db) {
                    return bad("api = \"v1\" needs db".into());
                }
                if self.org.is_some() || self.bucket.is_some() || self.token.is_some() {
                    return bad("org, bucket and token belong to api = \"v2\"".into());
                }
                if self.password.is_some() && blank(&self.username) {
                    return bad("password without username".into());
                }
            }
            Api::V2 => {
                if blank(&self.bucket) {
                    return bad("api = \"v2\" needs bucket".into());
                }
                if self.db.is_some()
                    || self.rp.is_some()
                    || self.username.is_some()
                    || self.password.is_some()
                {
                    return bad("db, rp, username and password belong to api = \"v1\"".into());
                }
            }
        }
        if !self.measurement_prefix.is_empty() {
            ident::validate(&self.measurement_prefix)
                .map_err(|e| SinkError::Config(format!("influxdb sink: measurement_prefix: {e}")))?;
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024".into());
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<InfluxConfig, String> {
        let c: InfluxConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn v1_and_v2_urls_carry_their_parameters() {
        let c = parse(serde_json::json!({"url": "http://h:8086", "db": "roost", "rp": "week"})).unwrap();
        assert_eq!(c.write_url().unwrap().as_str(), "http://h:8086/write?db=roost&rp=week&precision=ns");
        let c = parse(serde_json::json!({"url": "https://h/influx/", "api": "v2", "org": "o e", "bucket": "b", "token": "t"}))
            .unwrap();
        assert_eq!(
            c.write_url().unwrap().as_str(),
            "https://h/influx/api/v2/write?org=o+e&bucket=b&precision=ns"
        );
    }

    #[test]
    fn options_of_the_other_api_and_credentials_in_the_url_are_refused() {
        let err = |v| parse(v).unwrap_err();
        assert!(err(serde_json::json!({"url": "http://h"})).contains("needs db"));
        assert!(err(serde_json::json!({"url": "http://h", "api": "v2"})).contains("needs bucket"));
        assert!(err(serde_json::json!({"url": "http://h", "db": "d", "token": "t"}))
            .contains("belong to api = \"v2\""));
        assert!(err(serde_json::json!({"url": "http://u:p@h", "db": "d"})).contains("credentials"));
        assert!(err(serde_json::json!({"url": "ftp://h", "db": "d"})).contains("scheme"));
        assert!(err(serde_json::json!({"url": "http://h", "db": "d", "measurment_prefix": "x"}))
            .contains("unknown field"));
        assert!(err(serde_json::json!({"url": "http://h", "db": "d", "measurement_prefix": "a b"}))
            .contains("prefix"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c =
            parse(serde_json::json!({"url": "http://h", "db": "d", "username": "u", "password": "hunter2"}))
                .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = parse(serde_json::json!({"url": "http://h", "api": "v2", "bucket": "b", "token": "s3cret"}))
            .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
