//! `roost`: the server and its command line.
//!
//! - [`config`]: the layered settings (`default.toml` -> `--config` -> `ROOST__*` -> flags).
//! - [`mqtt`]: the embedded `rmqtt` broker; the only module that names rmqtt types.
//! - [`ingest`]: what the broker calls for each accepted message (topic filter -> pipelines).
//! - [`pipeline`]: the pipeline actors (processor, then the pipeline's sinks).
//! - [`sink`]: the sink actors (batching, retries, backpressure).
//! - [`stats`]: the counters behind `/metrics` and `/api/v1/status`.
//! - [`prometheus`]: the Prometheus text format `/metrics` is written in.
//! - [`ratelimit`]: how often the actors may log the same kind of failure.
//! - [`api`]: the admin HTTP API (actix-web): its core, its one error type, and the
//!   [`api::ApiFeature`] trait each feature's `api` module implements to add its routes.
//! - [`datadir`]: the admin token, the data directory's lock, pid file and runtime file, and
//!   atomic file writes.
//! - [`deadletter`]: what could not be written or mapped, kept to be listed and replayed.
//! - [`client`]: the admin API client the CLI's client commands share.
//! - [`output`]: tables and durations as the CLI prints them.
//! - [`server`]: wiring, serving and the ordered shutdown.
//! - [`cli`]: `roost serve | status | stop | config check | processor ... | board ...`.
//! - [`processors`]: WebAssembly processors in the server (`/api/v1/processors`, `roost processor`).
//! - [`boards`]: the board command service (registry, requests, `/api/v1/boards`, `roost board`).
//! - [`devices`]: device credentials (`/api/v1/devices`, `roost device`) and who may connect as whom.
//! - [`export`]: a sink's records streamed out as CSV, JSON lines or a zip (`roost export`,
//!   `/api/v1/export`).

pub mod api;
pub mod boards;
pub mod cli;
pub mod client;
pub mod config;
pub mod datadir;
pub mod deadletter;
pub mod devices;
pub mod export;
pub mod grafana;
pub mod ingest;
pub mod mqtt;
pub mod output;
pub mod pipeline;
pub mod processors;
pub mod prometheus;
pub mod ratelimit;
pub mod server;
pub mod sink;
pub mod stats;
pub mod tls;
