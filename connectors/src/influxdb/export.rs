//! Reading an InfluxDB sink's database back (`roost export`) through the InfluxQL `/query`
//! endpoint: InfluxDB 1.x (`db`, `rp`, basic auth) and InfluxDB 2.x/3.x through their
//! 1.x-compatible `/query` (the bucket's name as the database, token auth; the server must map
//! it, as InfluxDB 2.x does for every bucket). Measurements are those that start with the
//! sink's `measurement_prefix`; their columns are the tag keys (`SHOW TAG KEYS`) and field keys
//! (`SHOW FIELD KEYS`, with each field's type); rows come from `SELECT *` ordered by time with
//! `chunked=true`, read one chunk (a JSON document per line) at a time, so memory stays
//! bounded by one chunk whatever the size.
//!
//! InfluxDB answers a float with no fractional part as a JSON integer: the field's type from
//! `SHOW FIELD KEYS` says which it is, so values read back with the type they were written
//! with. VictoriaMetrics accepts line protocol but keeps series of numbers, not records: it is
//! refused with an error saying so (it answers `/ping` without `X-Influxdb-Build`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use roost_core::FieldValue;
use serde::Deserialize;
use serde_json::Value;

use super::config::{Api, InfluxConfig};
use crate::export::{
    batched, unprefixed, Cursor, ExportError, Names, OpenSource, Precision, Query, Row, Rows, Source,
};
use crate::names::DEVICE;
use crate::{SinkConfig, SinkContext};

/// Points per chunk the server sends.
const CHUNK: usize = 5000;

/// Reads one InfluxDB database.
pub struct InfluxSource {
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Option<HeaderValue>,
    /// The database (`db`, or the bucket for the v2 API) and retention policy.
    db: String,
    rp: Option<String>,
    prefix: String,
}

#[async_trait]
impl OpenSource for InfluxConfig {
    async fn open_source(
        &self,
        _kind: &'static str,
        _ctx: &SinkContext,
    ) -> Result<Box<dyn Source>, ExportError> {
        let config = |e: crate::SinkError| ExportError::Config(e.to_string());
        self.validate().map_err(config)?;
        // No overall timeout: an export streams for as long as it takes; a stalled read fails.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(self.timeout_ms.min(5_000)))
            .read_timeout(Duration::from_millis(self.timeout_ms.max(30_000)))
            .build()
            .map_err(|e| ExportError::Config(format!("influxdb sink: http client: {e}")))?;
        let auth = match self.api {
            Api::V1 => self.username.as_deref().map(|user| {
                super::sink::basic_auth(user, self.password.as_ref().map(|p| p.expose()).unwrap_or_default())
            }),
            Api::V2 => self.token.as_ref().map(|t| format!("Token {}", t.expose())),
        };
        let auth = match auth {
            Some(v) => {
                let mut v = HeaderValue::from_str(&v).map_err(|_| {
                    ExportError::Config("influxdb sink: credentials hold characters HTTP cannot carry".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let db = match self.api {
            Api::V1 => self.db.clone(),
            Api::V2 => self.bucket.clone(),
        }
        .unwrap_or_default();
        let source = InfluxSource {
            client,
            url: self.query_url().map_err(config)?,
            auth,
            db,
            rp: self.rp.clone().filter(|rp| !rp.is_empty()),
            prefix: self.measurement_prefix.clone(),
        };
        source.check_server().await?;
        Ok(Box::new(source))
    }
}

/// One statement's result in a `/query` answer.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Series {
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

impl InfluxSource {
    /// Checks that the server is InfluxDB (VictoriaMetrics cannot give records back).
    async fn check_server(&self) -> Result<(), ExportError> {
        let mut ping = self.url.clone();
        let path = ping.path().trim_end_matches("query").to_owned();
        ping.set_path(&format!("{path}ping"));
        let resp = self.request(self.client.get(ping)).send().await.map_err(|e| unreachable(&e))?;
        if resp.headers().contains_key("x-influxdb-build") {
            return Ok(());
        }
        Err(ExportError::Unsupported(format!(
            "influxdb sink: the server at {} does not say it is InfluxDB (no X-Influxdb-Build header on /ping): \
             VictoriaMetrics keeps series of numbers, not records, and cannot be exported as records; \
             read it with its own /api/v1/export instead",
            self.url.origin().ascii_serialization()
        )))
    }

    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(auth) => req.header(AUTHORIZATION, auth.clone()),
            None => req,
        }
    }

    /// Sends `q`; with `chunked`, the server answers one JSON document per line.
    async fn send(&self, q: &str, chunked: bool) -> Result<reqwest::Response, ExportError> {
        let chunk = CHUNK.to_string();
        let mut form = vec![("q", q), ("db", self.db.as_str()), ("epoch", "ns")];
        if let Some(rp) = &self.rp {
            form.push(("rp", rp));
        }
        if chunked {
            form.extend([("chunked", "true"), ("chunk_size", chunk.as_str())]);
        }
        let resp = self
            .request(self.client.post(self.url.clone()).form(&form))
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Answer>(&body).ok().and_then(|a| a.error).unwrap_or(body);
            let what = if status.as_u16() == 401 || status.as_u16() == 403 {
                "the server refused the sink's credentials: "
            } else {
                ""
            };
            return Err(ExportError::Unavailable(format!(
                "influxdb sink: {q}: HTTP {}: {what}{}",
                status.as_u16(),
                message.trim()
            )));
        }
        Ok(resp)
    }

    /// Runs a small query (no chunks) and returns its first statement's series.
    async fn small(&self, q: &str) -> Result<Vec<Series>, ExportError> {
        let resp = self.send(q, false).await?;
        let answer: Answer = resp
            .json()
            .await
            .map_err(|e| ExportError::Unavailable(format!("influxdb sink: {q}: reading the answer: {e}")))?;
        let mut results = answer.results.into_iter();
        match results.next() {
            Some(r) => match r.error {
                Some(e) => Err(statement_error(q, &e)),
                None => Ok(r.series),
            },
            None => Err(statement_error(q, &answer.error.unwrap_or_default())),
        }
    }

    fn first_column(series: Vec<Series>) -> Vec<String> {
        series
            .into_iter()
            .flat_map(|s| s.values)
            .filter_map(|v| v.into_iter().next().and_then(|v| v.as_str().map(str::to_owned)))
            .collect()
    }

    /// Field keys and their types (`float`, `integer`, `boolean`, `string`).
    async fn fields(&self, measurement: &str) -> Result<Vec<(String, String)>, ExportError> {
        let q = format!("SHOW FIELD KEYS FROM {}", ident(&self.full(measurement)));
        let series = self.small(&q).await?;
        Ok(series
            .into_iter()
            .flat_map(|s| s.values)
            .filter_map(|v| match (v.first(), v.get(1)) {
                (Some(Value::String(k)), Some(Value::String(t))) => Some((k.clone(), t.clone())),
                _ => None,
            })
            .collect())
    }

    fn full(&self, measurement: &str) -> String {
        format!("{}{measurement}", self.prefix)
    }
}

fn statement_error(q: &str, e: &str) -> ExportError {
    if e.contains("database not found") {
        ExportError::Config(format!(
            "influxdb sink: {e}; nothing was written to this sink yet, or its db/bucket is wrong"
        ))
    } else {
        ExportError::Unavailable(format!("influxdb sink: {q}: {e}"))
    }
}

fn unreachable(e: &reqwest::Error) -> ExportError {
    let mut message = format!("influxdb sink: cannot reach the server: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    ExportError::Unavailable(message)
}

/// An InfluxQL identifier: double-quoted, `\` and `"` escaped.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal: single-quoted, `\` and `'` escaped.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[async_trait]
impl Source for InfluxSource {
    fn kind(&self) -> &'static str {
        "influxdb"
    }

    fn precision(&self) -> Precision {
        Precision::Nanos
    }

    async fn measurements(&mut self) -> Result<Vec<String>, ExportError> {
        let names = Self::first_column(self.small("SHOW MEASUREMENTS").await?);
        let mut out = unprefixed(names, &self.prefix);
        out.sort();
        Ok(out)
    }

    /// The tag keys but `device`, then the field keys, each sorted.
    async fn columns(&mut self, measurement: &str, _query: &Query) -> Result<Vec<String>, ExportError> {
        let q = format!("SHOW TAG KEYS FROM {}", ident(&self.full(measurement)));
        let mut tags = Self::first_column(self.small(&q).await?);
        tags.retain(|t| t != DEVICE);
        tags.sort();
        tags.dedup();
        let mut fields: Vec<String> = self.fields(measurement).await?.into_iter().map(|(k, _)| k).collect();
        fields.sort();
        fields.dedup();
        fields.retain(|f| !tags.contains(f));
        tags.extend(fields);
        Ok(tags)
    }

    async fn rows<'a>(&'a mut self, measurement: &str, query: &Query) -> Result<Rows<'a>, ExportError> {
        let types: HashMap<String, String> = self.fields(measurement).await?.into_iter().collect();
        let mut q = format!(
            "SELECT * FROM {} WHERE time >= {}",
            ident(&self.full(measurement)),
            query.from.unwrap_or(i64::MIN + 2)
        );
        if let Some(to) = query.to {
            q.push_str(&format!(" AND time < {to}"));
        }
        if !query.devices.is_empty() {
            let any: Vec<String> =
                query.devices.iter().map(|d| format!("{}::tag = {}", ident(DEVICE), literal(d))).collect();
            q.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        q.push_str(" ORDER BY time ASC");
        let resp = self.send(&q, true).await?;
        Ok(batched(Chunks { resp, q, buf: Vec::new(), types, names: Names::default(), done: false }))
    }
}

/// The chunks of a `chunked=true` answer: one JSON document per line.
struct Chunks {
    resp: reqwest::Response,
    q: String,
    buf: Vec<u8>,
    types: HashMap<String, String>,
    names: Names,
    done: bool,
}

#[async_trait]
impl Cursor for Chunks {
    async fn next_batch(&mut self) -> Result<Option<Vec<Row>>, ExportError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return self.parse(&line).map(Some);
            }
            if self.done {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buf);
                return self.parse(&line).map(Some);
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => self.done = true,
                Err(e) => return Err(unreachable(&e)),
            }
        }
    }
}

impl Chunks {
    fn parse(&mut self, line: &[u8]) -> Result<Vec<Row>, ExportError> {
        let answer: Answer = serde_json::from_slice(line).map_err(|e| {
            ExportError::Unavailable(format!("influxdb sink: {}: unreadable answer: {e}", self.q))
        })?;
        if let Some(e) = answer.error {
            return Err(statement_error(&self.q, &e));
        }
        let mut rows = Vec::new();
        for result in answer.results {
            if let Some(e) = result.error {
                return Err(statement_error(&self.q, &e));
            }
            for series in result.series {
                let names: Vec<Arc<str>> = series.columns.iter().map(|c| self.names.get(c)).collect();
                let time_at = series.columns.iter().position(|c| c == "time");
                let device_at = series.columns.iter().position(|c| c == DEVICE);
                for values in series.values {
                    let mut row = Row { time: 0, device: String::new(), values: Vec::new() };
                    for (i, v) in values.into_iter().enumerate() {
                        if Some(i) == time_at {
                            row.time = v.as_i64().unwrap_or_default();
                        } else if Some(i) == device_at {
                            row.device = v.as_str().unwrap_or_default().to_owned();
                        } else if let Some(value) = self.value(&series.columns[i], v) {
                            row.values.push((names[i].clone(), value));
                        }
                    }
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    /// A JSON value as the field's type says (a float without fraction comes as an integer).
    fn value(&self, column: &str, v: Value) -> Option<FieldValue> {
        let ty = self.types.get(column).map(String::as_str);
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => FieldValue::Bool(b),
            Value::String(s) => FieldValue::Str(s),
            Value::Number(n) => match (ty, n.as_i64()) {
                (Some("integer"), Some(i)) => FieldValue::Int(i),
                (Some("float"), _) | (_, None) => FieldValue::Float(n.as_f64()?),
                (_, Some(i)) => FieldValue::Int(i),
            },
            other => FieldValue::Str(other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings_are_escaped() {
        assert_eq!(ident("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(literal("it's"), "'it\\'s'");
    }
}
