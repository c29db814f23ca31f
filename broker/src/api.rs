//! The admin HTTP API (actix-web).
//!
//! `GET /health` (no auth), `GET /metrics` (Prometheus text, no auth: scrapers rarely carry
//! tokens; bind the API to a private address), and everything under `/api/v1`, which requires
//! `Authorization: Bearer <token>` with the token from `<data_dir>/admin.token`. Errors are JSON:
//! `{"error": {"code": "...", "message": "..."}}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde_json::json;
use thiserror::Error;

use crate::stats::{
    self, DeadLetterStatus, PipelineStats, PipelineStatus, SinkStats, SinkStatus, Stats, Status,
};

/// What the handlers read.
pub struct ApiState {
    pub token: String,
    pub started: Instant,
    pub mqtt_addr: std::sync::OnceLock<SocketAddr>,
    pub api_addr: std::sync::OnceLock<SocketAddr>,
    pub stats: Arc<Stats>,
    /// Each pipeline with its topic filters and sink names.
    pub pipelines: Vec<(Arc<PipelineStats>, Vec<String>, Vec<String>)>,
    pub sinks: Vec<Arc<SinkStats>>,
    /// The dead-letter store (`/api/v1/deadletters`) and where replayed letters go.
    pub dead_letters: crate::deadletter::DeadLetters,
    pub replay: crate::deadletter::api::Replay,
    /// The board command service (`/api/v1/boards/...`, see `boards::api`).
    pub boards: Arc<crate::boards::BoardService>,
    /// WebAssembly processors (`/api/v1/processors/...`, see `processors::api`).
    pub processors: Arc<crate::processors::Processors>,
}

/// An API error, rendered as JSON.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token; the admin token is in <data_dir>/admin.token")]
    Unauthorized,
    #[error("no such endpoint")]
    NotFound,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
        };
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(json!({"error": {"code": code, "message": self.to_string()}}))
    }
}

/// An endpoint's error answer: `{"error": {"code", "message", ...details}}` with its status.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// More keys of the error object (e.g. each sample's result).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Failure {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure { status, code, message: message.into(), details: serde_json::Map::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }

    /// Adds `key` to the error object.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.insert(key.into(), value);
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = self.details.clone();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        HttpResponse::build(self.status).json(json!({ "error": error }))
    }
}

/// Starts the API server on `listen`; returns the bound address and a handle to stop it.
pub fn start(listen: SocketAddr, state: Arc<ApiState>) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .service(
                web::scope("/api/v1")
                    .wrap(from_fn(require_token))
                    .route("/status", web::get().to(status))
                    .configure(crate::deadletter::api::configure)
                    .configure(crate::boards::api::configure)
                    .configure(crate::processors::api::configure),
            )
            .default_service(web::to(|| async { ApiError::NotFound.error_response() }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(listen)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    let _ = state.api_addr.set(addr);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<ApiState>>().cloned();
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (state, given) {
        (Some(state), Some(given)) if constant_time_eq(given.as_bytes(), state.token.as_bytes()) => {
            next.call(req).await
        }
        _ => Err(ApiError::Unauthorized.into()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let pipelines: Vec<&PipelineStats> = state.pipelines.iter().map(|(p, _, _)| p.as_ref()).collect();
    let sinks: Vec<&SinkStats> = state.sinks.iter().map(Arc::as_ref).collect();
    let dead_letters = DeadLetterStatus::of(&state.dead_letters.stats);
    let mut body =
        stats::prometheus(&state.stats, &pipelines, &sinks, &dead_letters, state.started.elapsed());
    stats::labelled_counters(
        &mut body,
        "roost_board_events_total",
        "Board command channel events: requests sent; replies forged, unknown or malformed; \
         statuses malformed; publishes, subscriptions and last wills refused.",
        "event",
        state.boards.counters.snapshot(),
    );
    stats::processor_metrics(&mut body, &state.processors.registry.list());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}

async fn status(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(snapshot(&state))
}

/// The status document.
pub fn snapshot(state: &ApiState) -> Status {
    use std::sync::atomic::Ordering::Relaxed;
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        uptime_secs: state.started.elapsed().as_secs(),
        listeners: stats::Listeners {
            mqtt: state.mqtt_addr.get().map(ToString::to_string).unwrap_or_default(),
            api: state.api_addr.get().map(ToString::to_string).unwrap_or_default(),
        },
        connections: state.stats.connections.load(Relaxed),
        messages_in: state.stats.messages_in.load(Relaxed),
        messages_unrouted: state.stats.messages_unrouted.load(Relaxed),
        messages_refused: state.stats.messages_refused.load(Relaxed),
        pipelines: state
            .pipelines
            .iter()
            .map(|(p, topics, sinks)| PipelineStatus {
                name: p.name.clone(),
                topics: topics.clone(),
                processor: state.processors.label(&p.name),
                sinks: sinks.clone(),
                messages: p.messages.load(Relaxed),
                records: p.records.load(Relaxed),
                errors: p.errors.load(Relaxed),
            })
            .collect(),
        sinks: state.sinks.iter().map(|s| SinkStatus::of(s)).collect(),
        dead_letters: DeadLetterStatus::of(&state.dead_letters.stats),
    }
}
