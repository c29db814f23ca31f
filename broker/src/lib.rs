//! `roost`: the server and its command line.
//!
//! - [`config`]: the layered settings (`default.toml` -> `--config` -> `ROOST__*` -> flags).
//! - [`mqtt`]: the embedded `rmqtt` broker; the only module that names rmqtt types.
//! - [`pipeline`]: ingest (topic filter -> pipeline) and the pipeline actors (processor).
//! - [`sink`]: the sink actors (batching, retries, backpressure).
//! - [`stats`]: the counters behind `/metrics` and `/api/v1/status`.
//! - [`api`]: the admin HTTP API (actix-web): its core, its one error type, and the
//!   [`api::ApiFeature`] trait each feature's `api` module implements to add its routes.
//! - [`datadir`]: the admin token, pid file and runtime file in the data directory.
//! - [`deadletter`]: what could not be written or mapped, kept to be listed and replayed.
//! - [`client`]: the admin API client the CLI's client commands share.
//! - [`server`]: wiring, serving and the ordered shutdown.
//! - [`cli`]: `roost serve | status | stop | config check | processor ... | board ...`.
//! - [`processors`]: WebAssembly processors in the server (`/api/v1/processors`, `roost processor`).
//! - [`boards`]: the board command service (registry, requests, `/api/v1/boards`, `roost board`).

pub mod api;
pub mod boards;
pub mod cli;
pub mod client;
pub mod config;
pub mod datadir;
pub mod deadletter;
pub mod mqtt;
pub mod pipeline;
pub mod processors;
pub mod server;
pub mod sink;
pub mod stats;
