//! The admin API client that the CLI's client commands share. It finds the running server
//! through the data directory (the address in `runtime.json`, else `api.listen`, and the token
//! in `admin.token`), speaks HTTPS when the API does (trusting `api.tls.ca` besides the public
//! roots), and turns the API's JSON errors into readable ones.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Settings;
use crate::datadir;

/// Where to reach a server listening on `addr`: an unspecified address (`0.0.0.0`, `[::]`)
/// is reached on loopback, the name a server certificate made by `roost tls init` holds.
fn reachable(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("127.0.0.1:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        _ => addr.to_owned(),
    }
}

/// A client of one server's admin API.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// The client for the server running on `settings.data_dir`.
    pub fn for_settings(settings: &Settings) -> Result<ApiClient> {
        let data_dir = &settings.data_dir;
        let token = datadir::read_token(data_dir)?;
        let (api, tls) = match datadir::read_runtime(data_dir) {
            Some(r) => (r.api, r.api_tls),
            None => (settings.api.listen.to_string(), settings.api.tls.is_some()),
        };
        // No whole-request timeout: an upload to many boards can take long. Connecting must not.
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(ca) = settings.api.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            let pem = std::fs::read(ca).with_context(|| format!("reading api.tls.ca {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("api.tls.ca {} is not a PEM certificate", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        let base = format!("{}://{}", if tls { "https" } else { "http" }, reachable(&api));
        Ok(ApiClient { base, token, http: http.build()? })
    }

    /// `METHOD url?query` with the token; reqwest percent-encodes the query.
    fn request(&self, method: Method, url: &str, query: &Query) -> reqwest::RequestBuilder {
        self.http.request(method, url).query(query).bearer_auth(&self.token)
    }

    /// Sends `METHOD /api/v1{path}?{query}` with `body`; the answer if it is a success, else the
    /// API's error message.
    async fn send(&self, method: Method, path: &str, query: &Query, body: Body) -> Result<reqwest::Response> {
        let url = format!("{}/api/v1{path}", self.base);
        let req = self.request(method.clone(), &url, query);
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

    /// `METHOD /api/v1{path}?{query}` with an optional JSON body; the JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Option<&Value>,
    ) -> Result<T> {
        let body = body.map_or(Body::None, |v| Body::Json(v.clone()));
        self.send_body(method, path, query, body).await
    }

    /// `METHOD /api/v1{path}?{query}` with any body; the JSON answer.
    pub async fn send_body<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
    ) -> Result<T> {
        let resp = self.send(method.clone(), path, query, body).await?;
        resp.json().await.with_context(|| format!("reading the answer of {method} {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, &[], None).await
    }

    pub async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    /// POSTs `body` (with `query`) and hands each line of the newline-delimited JSON answer to `on_line`, until
    /// it returns `false` (the last event) or the answer ends; `Ok(false)` if it ended first.
    pub async fn post_ndjson<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        body: Body,
        mut on_line: impl FnMut(T) -> bool,
    ) -> Result<bool> {
        let mut resp = self.send(Method::POST, path, query, body).await?;
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

/// Query parameters, `(name, value)`, in order; the client percent-encodes them.
pub type Query = [(&'static str, String)];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostlists_and_paths_are_percent_encoded_in_queries() {
        let client = ApiClient { base: "http://x".into(), token: "t".into(), http: reqwest::Client::new() };
        let query = [("boards", "b-[1-3],x y/é".to_owned()), ("source", "sink:pg db/1&x=1".to_owned())];
        let req = client.request(Method::POST, "http://x/api/v1/boards/upload", &query).build().unwrap();
        assert_eq!(
            req.url().query(),
            Some("boards=b-%5B1-3%5D%2Cx+y%2F%C3%A9&source=sink%3Apg+db%2F1%26x%3D1")
        );
        let req = client.request(Method::GET, "http://x/api/v1/status", &[]).build().unwrap();
        assert_eq!(req.url().as_str(), "http://x/api/v1/status", "no query, no `?`");
    }
}
