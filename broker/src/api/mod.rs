//! The admin HTTP API (actix-web): its core, which names no feature.
//!
//! `GET /health` (no auth), `GET /metrics` (Prometheus text, no auth: scrapers rarely carry
//! tokens; bind the API to a private address), and everything under `/api/v1`, which requires
//! `Authorization: Bearer <token>` with the token from `<data_dir>/admin.token`. Errors are JSON:
//! `{"error": {"code": "...", "message": "..."}}` ([`error::ApiError`]).
//!
//! The core serves `/health`, `/metrics` and `/api/v1/status`. Each feature (dead letters,
//! boards, processors) is an [`ApiFeature`]: it registers its own routes and state inside
//! `/api/v1`, adds what it knows to the status document and appends its lines to `/metrics`.
//! `server.rs` hands [`start`] the features it wired.

pub mod error;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde_json::json;

use self::error::ApiError;
use crate::stats::{
    self, DeadLetterStatus, PipelineStats, PipelineStatus, SinkStats, SinkStatus, Stats, Status,
};

/// A feature of the admin API: its routes and state, and what it adds to the status and the
/// metrics.
pub trait ApiFeature: Send + Sync + 'static {
    /// Registers the feature's routes, and its state as `web::Data`, inside the authenticated
    /// `/api/v1` scope.
    fn configure(&self, cfg: &mut web::ServiceConfig);

    /// Fills in the feature's part of the `/api/v1/status` document.
    fn status(&self, _status: &mut Status) {}

    /// Appends the feature's metrics (Prometheus text) to `/metrics`.
    fn metrics(&self, _out: &mut String) {}
}

/// A pipeline as the status and the metrics show it.
pub struct PipelineInfo {
    pub stats: Arc<PipelineStats>,
    /// Its topic filters.
    pub topics: Vec<String>,
    /// The names of the sinks it writes to.
    pub sinks: Vec<String>,
}

/// What the core handlers read.
pub struct ApiState {
    pub token: String,
    pub started: Instant,
    pub mqtt_addr: OnceLock<SocketAddr>,
    pub api_addr: OnceLock<SocketAddr>,
    pub stats: Arc<Stats>,
    pub pipelines: Vec<PipelineInfo>,
    pub sinks: Vec<Arc<SinkStats>>,
    /// The features, in the order their routes, status and metrics are added.
    pub features: Vec<Arc<dyn ApiFeature>>,
}

/// Starts the API server on `listen`; returns the bound address and a handle to stop it.
/// Serves the API on `listen`, over TLS with `tls`.
pub fn start(
    listen: SocketAddr,
    tls: Option<rustls::ServerConfig>,
    state: Arc<ApiState>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        let features = data.features.clone();
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .service(
                web::scope("/api/v1")
                    .wrap(from_fn(require_token))
                    .route("/status", web::get().to(status))
                    .route("/sinks", web::get().to(sinks))
                    .configure(|cfg| features.iter().for_each(|f| f.configure(cfg))),
            )
            .default_service(web::to(|| async { ApiError::not_found("no such endpoint").error_response() }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match tls {
        None => server.bind(listen)?,
        Some(tls) => server.bind_rustls_0_23(listen, tls)?,
    };
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
        _ => Err(ApiError::unauthorized().into()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let pipelines: Vec<&PipelineStats> = state.pipelines.iter().map(|p| p.stats.as_ref()).collect();
    let sinks: Vec<&SinkStats> = state.sinks.iter().map(Arc::as_ref).collect();
    let dead_letters = snapshot(&state).dead_letters;
    let mut body =
        stats::prometheus(&state.stats, &pipelines, &sinks, &dead_letters, state.started.elapsed());
    for feature in &state.features {
        feature.metrics(&mut body);
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}

/// `GET /api/v1/sinks`: each sink's counters, spool backlog, retry state and last error.
async fn sinks(state: web::Data<ApiState>) -> HttpResponse {
    let sinks: Vec<SinkStatus> = state.sinks.iter().map(|s| SinkStatus::of(s)).collect();
    HttpResponse::Ok().json(json!({ "sinks": sinks }))
}

async fn status(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(snapshot(&state))
}

/// The status document.
pub fn snapshot(state: &ApiState) -> Status {
    let mut status = Status {
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
            .map(|p| PipelineStatus {
                name: p.stats.name.clone(),
                topics: p.topics.clone(),
                processor: None,
                sinks: p.sinks.clone(),
                messages: p.stats.messages.load(Relaxed),
                records: p.stats.records.load(Relaxed),
                errors: p.stats.errors.load(Relaxed),
            })
            .collect(),
        sinks: state.sinks.iter().map(|s| SinkStatus::of(s)).collect(),
        dead_letters: DeadLetterStatus::default(),
    };
    for feature in &state.features {
        feature.status(&mut status);
    }
    status
}
