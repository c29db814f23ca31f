//! The `Sink` impl for InfluxDB and VictoriaMetrics: a batch becomes line protocol (encoded off
//! the async threads), split into requests under `max_body_bytes`, each sent gzipped with
//! `reqwest`; the server's answer decides what was written.
//!
//! | answer | what the sink does |
//! |---|---|
//! | 2xx | every line written |
//! | 400, 422 | some lines refused: the ones the body names (`unable to parse '<line>'`, `field type conflict: input field "f" on measurement "m" ... already exists as type t`) are rejected with the server's reason; when the body does not account for every dropped line, the unaccounted lines are re-sent in halves until each refused line is found (InfluxDB overwrites a point written twice with itself, so re-sending is harmless) |
//! | 401, 403 | [`SinkError::Config`]: the credentials are wrong |
//! | 404 | v1 "database not found": the database is created once and the request re-sent; otherwise [`SinkError::Config`] |
//! | 413 | the request is split in halves, and later requests are kept under the size that worked |
//! | 429, 503 | waits out `Retry-After` up to `max_retry_wait_ms` (twice at most), then [`SinkError::Unavailable`] |
//! | 408, other 5xx, no connection, timeout | [`SinkError::Unavailable`]: the whole batch is written again later, which is idempotent for the same reason |
//! | any other answer, a request the client cannot build | [`SinkError::Config`] |

use std::future::Future;
use std::io::Write;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use roost_core::Record;
use tracing::{debug, warn};

use super::config::{Api, InfluxConfig};
use super::schema::{encode_line, influx_type};
use crate::{names, OpenSink, Rejected, Sink, SinkConfig, SinkContext, SinkError, WriteOutcome};

/// Writes batches to an InfluxDB-compatible server over HTTP.
pub struct InfluxSink {
    config: Arc<InfluxConfig>,
    client: reqwest::Client,
    write_url: Url,
    auth: Option<HeaderValue>,
    /// `max_body_bytes`, lowered when the server answers 413.
    pub(super) body_limit: usize,
    /// Whether this sink already tried to create the v1 database.
    tried_create: bool,
    /// Whether the server said it is InfluxDB (`X-Influxdb-Build`), which overwrites a point
    /// written twice: VictoriaMetrics also answers `X-Influxdb-Version`, but keeps both samples.
    influxdb: AtomicBool,
}

/// A batch in line protocol: one buffer, and each line's record index and byte range in it.
struct Encoded {
    batch: Arc<Vec<Record>>,
    buf: Vec<u8>,
    lines: Vec<(usize, Range<usize>)>,
}

impl Encoded {
    fn text(&self, line: usize) -> &[u8] {
        &self.buf[self.lines[line].1.clone()]
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[async_trait]
impl OpenSink for InfluxSink {
    type Config = InfluxConfig;

    /// Builds the HTTP client; nothing is sent until the first write.
    async fn open(config: InfluxConfig, _kind: &'static str, _ctx: &SinkContext) -> Result<Self, SinkError> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| SinkError::Config(format!("influxdb sink: http client: {e}")))?;
        let auth = match config.api {
            Api::V1 => config.username.as_deref().map(|user| {
                basic_auth(user, config.password.as_ref().map(|p| p.expose()).unwrap_or_default())
            }),
            Api::V2 => config.token.as_ref().map(|t| format!("Token {}", t.expose())),
        };
        let auth = match auth {
            Some(v) => {
                let mut v = HeaderValue::from_str(&v).map_err(|_| {
                    SinkError::Config(
                        "influxdb sink: username, password or token holds characters HTTP cannot carry"
                            .into(),
                    )
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let write_url = config.write_url()?;
        let body_limit = config.max_body_bytes;
        Ok(InfluxSink {
            config: Arc::new(config),
            client,
            write_url,
            auth,
            body_limit,
            tried_create: false,
            influxdb: AtomicBool::new(false),
        })
    }
}

impl InfluxSink {
    /// Sends `lines` (indices into `enc.lines`) as one request, and whatever re-sends the answer
    /// calls for. Returns the lines the server refused for good.
    fn send<'a>(
        &'a mut self,
        enc: &'a Encoded,
        lines: Vec<usize>,
    ) -> Boxed<'a, Result<Vec<Rejected>, SinkError>> {
        Box::pin(async move {
            let mut raw = Vec::with_capacity(lines.iter().map(|&l| enc.lines[l].1.len()).sum());
            for &l in &lines {
                raw.extend_from_slice(enc.text(l));
            }
            let raw_len = raw.len();
            let body = if self.config.gzip { gzip(raw).await? } else { raw };
            let mut waits = 0;
            loop {
                let (status, retry_after, text) = self.post(body.clone()).await?;
                match status.as_u16() {
                    200..=299 => return Ok(Vec::new()),
                    400 | 422 => return self.refused(enc, lines, &text).await,
                    401 | 403 => {
                        return Err(SinkError::Config(format!(
                            "influxdb sink: the server refused the credentials (HTTP {}): {}; check {}",
                            status.as_u16(),
                            server_message(&text),
                            match self.config.api {
                                Api::V1 => "username and password",
                                Api::V2 => "token (and its write permission on the bucket)",
                            }
                        )))
                    }
                    404 if self.config.api == Api::V1
                        && server_message(&text).contains("database not found")
                        && !self.tried_create =>
                    {
                        self.tried_create = true;
                        self.create_database().await?;
                    }
                    404 => {
                        return Err(SinkError::Config(format!(
                            "influxdb sink: {} answered 404 ({}); check url and api (InfluxDB 1.x speaks only api = \"v1\")",
                            self.write_url.path(),
                            server_message(&text)
                        )))
                    }
                    413 => {
                        if lines.len() == 1 {
                            let (index, _) = enc.lines[lines[0]];
                            return Ok(vec![Rejected {
                                index,
                                reason: format!("the server refuses a line of {raw_len} bytes as too large (HTTP 413)"),
                            }]);
                        }
                        self.body_limit = self.body_limit.min(raw_len / 2).max(1024);
                        warn!(sink = "influxdb", bytes = raw_len, limit = self.body_limit, "request too large, splitting");
                        let (a, b) = lines.split_at(lines.len() / 2);
                        let mut out = self.send(enc, a.to_vec()).await?;
                        out.extend(self.send(enc, b.to_vec()).await?);
                        return Ok(out);
                    }
                    429 | 503 => {
                        let wait = retry_after.unwrap_or(Duration::from_secs(1));
                        let cap = Duration::from_millis(self.config.max_retry_wait_ms);
                        if waits >= 2 || wait > cap {
                            return Err(SinkError::Unavailable(format!(
                                "influxdb sink: server busy (HTTP {}), retry after {} s: {}",
                                status.as_u16(),
                                wait.as_secs_f64(),
                                server_message(&text)
                            )));
                        }
                        waits += 1;
                        debug!(sink = "influxdb", status = status.as_u16(), wait_ms = wait.as_millis() as u64, "server busy, waiting");
                        tokio::time::sleep(wait).await;
                    }
                    // A request timeout: the server gave up waiting, a later request can pass.
                    408 | 500..=599 => {
                        return Err(SinkError::Unavailable(format!(
                            "influxdb sink: server error (HTTP {}): {}",
                            status.as_u16(),
                            server_message(&text)
                        )))
                    }
                    _ => {
                        return Err(SinkError::Config(format!(
                            "influxdb sink: unexpected answer HTTP {}: {}",
                            status.as_u16(),
                            server_message(&text)
                        )))
                    }
                }
            }
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(StatusCode, Option<Duration>, String), SinkError> {
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.config.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let resp = req.send().await.map_err(|e| unavailable(&e))?;
        let status = resp.status();
        if resp.headers().contains_key("x-influxdb-build") {
            self.influxdb.store(true, Ordering::Relaxed);
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = if status.is_success() { String::new() } else { resp.text().await.unwrap_or_default() };
        Ok((status, retry_after, text))
    }

    /// A 400/422: find which of `lines` the server refused.
    async fn refused(
        &mut self,
        enc: &Encoded,
        lines: Vec<usize>,
        body: &str,
    ) -> Result<Vec<Rejected>, SinkError> {
        let msg = server_message(body);
        let partial = msg.starts_with("partial write");
        let parse_errors = msg.matches("unable to parse '").count();
        let dropped = dropped_count(&msg);

        if lines.len() == 1 {
            // One line: refused unless the server says a partial write dropped nothing.
            let (index, _) = enc.lines[lines[0]];
            if partial && parse_errors == 0 && dropped == Some(0) {
                return Ok(Vec::new());
            }
            return Ok(vec![Rejected { index, reason: clean(&msg) }]);
        }

        let mut rejected = Vec::new();
        let mut unknown = Vec::new();
        let mut parsed_refused = 0;
        for &l in &lines {
            let text = String::from_utf8_lossy(enc.text(l));
            let needle = format!("unable to parse '{}': ", text.trim_end_matches('\n'));
            match msg.find(&needle) {
                Some(at) => {
                    let rest = &msg[at + needle.len()..];
                    let end = rest
                        .find("\nunable to parse '")
                        .or_else(|| rest.rfind(" dropped="))
                        .unwrap_or(rest.len());
                    rejected.push(Rejected {
                        index: enc.lines[l].0,
                        reason: format!("unable to parse: {}", &rest[..end]),
                    });
                    parsed_refused += 1;
                }
                None => unknown.push(l),
            }
        }
        if partial {
            // The server wrote everything it did not drop; a type conflict names only its first
            // field, so the lines it describes are trusted only when they account for `dropped`.
            let conflicts = type_conflict(&msg)
                .map(|c| {
                    let prefix = &self.config.measurement_prefix;
                    unknown.iter().filter_map(|&l| c.hits(enc, l, prefix)).collect::<Vec<Rejected>>()
                })
                .unwrap_or_default();
            if parsed_refused == parse_errors && Some(conflicts.len()) == dropped {
                rejected.extend(conflicts);
                return Ok(rejected);
            }
            if parsed_refused == parse_errors && dropped == Some(0) {
                return Ok(rejected);
            }
        }
        // Nothing written (or not sure what was): re-send the lines not known to be refused,
        // in halves when that would repeat this request.
        if unknown.len() < lines.len() {
            if !unknown.is_empty() {
                rejected.extend(self.send(enc, unknown).await?);
            }
        } else {
            let (a, b) = unknown.split_at(unknown.len() / 2);
            rejected.extend(self.send(enc, a.to_vec()).await?);
            rejected.extend(self.send(enc, b.to_vec()).await?);
        }
        Ok(rejected)
    }

    /// `CREATE DATABASE` for the v1 `db` (the answer to "database not found").
    async fn create_database(&self) -> Result<(), SinkError> {
        let db = self.config.db.as_deref().unwrap_or_default();
        let q = format!("CREATE DATABASE \"{}\"", db.replace('\\', "\\\\").replace('"', "\\\""));
        let mut req = self.client.post(self.config.query_url()?).form(&[("q", q.as_str())]);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let resp = req.send().await.map_err(|e| unavailable(&e))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() && !text.contains("\"error\"") {
            debug!(sink = "influxdb", db, "database created");
            return Ok(());
        }
        Err(SinkError::Config(format!(
            "influxdb sink: database {db:?} does not exist and could not be created (HTTP {}): {}",
            status.as_u16(),
            server_message(&text)
        )))
    }
}

/// `field type conflict: input field "F" on measurement "M" is type T, already exists as type U`
struct Conflict {
    field: String,
    measurement: String,
    existing: String,
}

fn type_conflict(msg: &str) -> Option<Conflict> {
    let rest = &msg[msg.find("field type conflict: input field \"")? + 34..];
    let (field, rest) = rest.split_once("\" on measurement \"")?;
    let (measurement, rest) = rest.split_once("\" is type ")?;
    let (_, rest) = rest.split_once(", already exists as type ")?;
    let existing: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    Some(Conflict { field: field.into(), measurement: measurement.into(), existing })
}

impl Conflict {
    /// The line's rejection if its record has the conflicting field with another type.
    fn hits(&self, enc: &Encoded, line: usize, prefix: &str) -> Option<Rejected> {
        let index = enc.lines[line].0;
        let r = &enc.batch[index];
        let value = r.fields.get(&self.field)?;
        let named = r.measurement.len() + prefix.len() == self.measurement.len()
            && self.measurement.starts_with(prefix)
            && self.measurement.ends_with(&r.measurement);
        let t = influx_type(value);
        (named && t != self.existing).then(|| Rejected {
            index,
            reason: format!(
                "field type conflict: input field {:?} on measurement {:?} is type {t}, already exists as type {}",
                self.field, self.measurement, self.existing
            ),
        })
    }
}

/// The `error` (1.x) or `message` (2.x) of a JSON error body, or the body itself.
fn server_message(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => v
            .get("error")
            .or_else(|| v.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.trim().to_owned()),
        Err(_) => body.trim().chars().take(500).collect(),
    }
}

fn dropped_count(msg: &str) -> Option<usize> {
    let at = msg.rfind(" dropped=")?;
    msg[at + 9..].trim().parse().ok()
}

/// A server message as a rejection reason: without the `partial write:` and `dropped=` frame.
fn clean(msg: &str) -> String {
    let m = msg.strip_prefix("partial write:").unwrap_or(msg).trim();
    match m.rfind(" dropped=") {
        Some(at) => m[..at].to_owned(),
        None => m.to_owned(),
    }
}

/// A request that got no answer: the server is away, slow or unreachable, worth retrying; or
/// the request cannot be made at all (a URL the client refuses), which no retry fixes.
fn unavailable(e: &reqwest::Error) -> SinkError {
    let mut msg = format!("influxdb sink: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_builder() {
        return SinkError::Config(format!("{msg}; check url"));
    }
    SinkError::Unavailable(msg)
}

async fn gzip(raw: Vec<u8>) -> Result<Vec<u8>, SinkError> {
    let raw_len = raw.len();
    let work = move || {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        enc.write_all(&raw).and_then(|()| enc.finish())
    };
    let out = if raw_len < 256 << 10 {
        work()
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| SinkError::Unavailable(format!("influxdb sink: gzip task: {e}")))?
    };
    out.map_err(|e| SinkError::Unavailable(format!("influxdb sink: gzip: {e}")))
}

/// Encodes every record that passes the name rule; the others are rejected with why.
fn encode(batch: Arc<Vec<Record>>, config: &InfluxConfig) -> (Encoded, Vec<Rejected>) {
    let mut buf = Vec::with_capacity(batch.len() * 96);
    let mut lines = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    for (index, r) in batch.iter().enumerate() {
        let start = buf.len();
        let result = names::check_record(r)
            .and_then(|()| encode_line(r, &config.measurement_prefix, config.string_fields, &mut buf));
        match result {
            Ok(()) => lines.push((index, start..buf.len())),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    (Encoded { batch, buf, lines }, rejected)
}

#[async_trait]
impl Sink for InfluxSink {
    fn kind(&self) -> &'static str {
        "influxdb"
    }

    async fn write(&mut self, batch: Arc<Vec<Record>>) -> Result<WriteOutcome, SinkError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let started = Instant::now();
        let config = self.config.clone();
        let b = batch.clone();
        let (enc, mut rejected) = tokio::task::spawn_blocking(move || encode(b, &config))
            .await
            .map_err(|e| SinkError::Unavailable(format!("influxdb sink: encode task: {e}")))?;
        // Requests of whole lines, each under the body limit.
        let limit = self.body_limit;
        let mut requests: Vec<Vec<usize>> = Vec::new();
        let mut current = Vec::new();
        let mut size = 0;
        for (l, (index, range)) in enc.lines.iter().enumerate() {
            if range.len() > limit {
                rejected.push(Rejected {
                    index: *index,
                    reason: format!("its line of {} bytes is over max_body_bytes ({limit})", range.len()),
                });
                continue;
            }
            if size + range.len() > limit && !current.is_empty() {
                requests.push(std::mem::take(&mut current));
                size = 0;
            }
            current.push(l);
            size += range.len();
        }
        if !current.is_empty() {
            requests.push(current);
        }
        let n_requests = requests.len();
        for lines in requests {
            rejected.extend(self.send(&enc, lines).await?);
        }
        rejected.sort_by_key(|r| r.index);
        let written = batch.len() - rejected.len();
        debug!(
            sink = "influxdb",
            records = batch.len(),
            written,
            rejected = rejected.len(),
            requests = n_requests,
            bytes = enc.buf.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch written"
        );
        Ok(WriteOutcome { written, rejected })
    }

    /// InfluxDB keeps one point per measurement, tag set and time: a replayed batch overwrites
    /// its own points. VictoriaMetrics keeps every sample (unless run with
    /// `-dedup.minScrapeInterval`), so until the server has said it is InfluxDB this is `none`.
    fn replay_safety(&self) -> &'static str {
        if self.influxdb.load(Ordering::Relaxed) {
            "natural"
        } else {
            "none"
        }
    }
}

/// The `Authorization` value for HTTP basic authentication (RFC 7617).
pub(super) fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64_STANDARD.encode(format!("{user}:{password}")))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn answers_captured_from_influxdb_1_6_are_read() {
        let body = r#"{"error":"partial write: field type conflict: input field \"x\" on measurement \"m\" is type float, already exists as type integer dropped=3"}"#;
        let msg = server_message(body);
        assert_eq!(dropped_count(&msg), Some(3));
        let c = type_conflict(&msg).unwrap();
        assert_eq!((c.field.as_str(), c.measurement.as_str(), c.existing.as_str()), ("x", "m", "integer"));
        assert_eq!(
            clean(&msg),
            "field type conflict: input field \"x\" on measurement \"m\" is type float, already exists as type integer"
        );
        let body = r#"{"error":"partial write: unable to parse 'm bad line here': invalid field format\nunable to parse 'm,t= x=1i 12000': missing tag value dropped=0"}"#;
        let msg = server_message(body);
        assert_eq!((msg.matches("unable to parse '").count(), dropped_count(&msg)), (2, Some(0)));
        assert!(type_conflict(&msg).is_none());
        assert_eq!(server_message("<html>busy</html>"), "<html>busy</html>");
        assert_eq!(server_message(r#"{"code":"invalid","message":"no bucket"}"#), "no bucket");
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(basic_auth("u", "p"), "Basic dTpw");
        assert_eq!(basic_auth("roost", "hunter2"), "Basic cm9vc3Q6aHVudGVyMg==");
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
        assert_eq!(basic_auth("", "ab"), "Basic OmFi");
        assert_eq!(basic_auth("", ""), "Basic Og==");
    }
}
