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
        let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
        Ok(ApiClient { base: format!("http://{api}"), token, http })
    }

    /// `METHOD /api/v1{path}` with an optional JSON body; the JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach roost at {url}; is it running? (`roost serve`)"))?;
        let status = resp.status();
        let text = resp.text().await.with_context(|| format!("reading the answer of {method} {url}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(anyhow!("{method} {url}: {message} ({status})"));
        }
        serde_json::from_str(&text).with_context(|| format!("reading the answer of {method} {url}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None).await
    }
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
