//! The admin API client that the CLI's client commands share. It finds the running server
//! through the data directory (the address in `runtime.json`, else `api.listen`, and the token
//! in `admin.token`) and turns the API's JSON errors into readable ones.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Settings;
use crate::datadir;

/// A client of one server's admin API.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// The client for the server running on `settings.data_dir`.
    pub fn for_settings(settings: &Settings) -> Result<ApiClient> {
        Self::for_data_dir(&settings.data_dir, &settings.api.listen.to_string())
    }

    pub fn for_data_dir(data_dir: &Path, default_api: &str) -> Result<ApiClient> {
        let token = datadir::read_token(data_dir)?;
        let api = datadir::read_runtime(data_dir).map(|r| r.api).unwrap_or_else(|| default_api.to_owned());
        // No whole-request timeout: an upload to many boards can take long. Connecting must not.
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(ApiClient { base: format!("http://{api}"), token, http })
    }

    /// Sends `METHOD /api/v1{path}` with `body`; the answer if it is a success, else the API's
    /// error message.
    async fn send(&self, method: Method, path: &str, body: Body) -> Result<reqwest::Response> {
        let url = format!("{}/api/v1{path}", self.base);
        let req = self.http.request(method.clone(), &url).bearer_auth(&self.token);
        let req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Bytes(b) => req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(b),
            Body::Typed(content_type, b) => req.header(reqwest::header::CONTENT_TYPE, content_type).body(b),
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach roost at {url}; is it running? (`roost serve`)"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(anyhow!("{message} ({method} {url}: {status})"))
    }

    /// `METHOD /api/v1{path}` with an optional JSON body; the JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let body = body.map_or(Body::None, |v| Body::Json(v.clone()));
        let resp = self.send(method.clone(), path, body).await?;
        resp.json().await.with_context(|| format!("reading the answer of {method} {path}"))
    }

    /// `METHOD /api/v1{path}` with any body; the JSON answer.
    pub async fn send_body<T: DeserializeOwned>(&self, method: Method, path: &str, body: Body) -> Result<T> {
        let resp = self.send(method.clone(), path, body).await?;
        resp.json().await.with_context(|| format!("reading the answer of {method} {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// POSTs `body` and hands each line of the newline-delimited JSON answer to `on_line`, until
    /// it returns `false` (the last event) or the answer ends; `Ok(false)` if it ended first.
    pub async fn post_ndjson<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Body,
        mut on_line: impl FnMut(T) -> bool,
    ) -> Result<bool> {
        let mut resp = self.send(Method::POST, path, body).await?;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.with_context(|| format!("reading the answer of POST {path}"))?
        {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let event: T = serde_json::from_slice(&line)
                    .with_context(|| format!("unexpected answer line: {}", String::from_utf8_lossy(&line)))?;
                if !on_line(event) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
    /// Bytes with their content type.
    Typed(String, Vec<u8>),
}

/// Runs one client command's future to completion.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f))
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::query_value("sink:pg db/1"), "sink%3Apg%20db%2F1");
        assert_eq!(super::query_value("a-b_c.d~"), "a-b_c.d~");
    }
}
