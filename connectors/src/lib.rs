//! `roost-connectors`: the databases Roost writes records to.
//!
//! - [`Sink`]: the one interface every database implements: a batch of records in, a per-batch
//!   outcome out (how many were written, which were rejected and why).
//! - [`registry`]: builds a sink from its `kind` and options, with an error that lists the kinds
//!   that exist when the kind is unknown.
//! - one folder per database (`sqlite/`, `postgres/`, `mysql/`, `influxdb/`, `mongodb/`), each `config.rs` (serde, `deny_unknown_fields`,
//!   validation without I/O), `sink.rs` (the `Sink` impl), `schema.rs` (type and identifier
//!   mapping), `tests.rs` (tests against the real database). Each sits behind a cargo feature.
//!
//! Batching, retries and backpressure belong to the caller (the broker's sink actor): a sink
//! writes what it is given, once, and says whether trying again could help.

#[cfg(feature = "influxdb")]
pub mod influxdb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod names;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod registry;
pub mod secret;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use roost_core::Record;
use thiserror::Error;

pub use registry::{effective_options, open, validate, SinkContext, KINDS};

/// Why a sink could not be built or a batch could not be written.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The sink's options are wrong; nothing will work until the operator changes them.
    #[error("{0}")]
    Config(String),
    /// The database could not take the batch now (down, busy, full); the same batch may be
    /// written later.
    #[error("{0}")]
    Unavailable(String),
}

impl SinkError {
    /// Whether writing the same batch again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Unavailable(_))
    }
}

/// A record the database refused for good (an invalid name, a value it cannot hold), with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its position in the batch.
    pub index: usize,
    pub reason: String,
}

/// What became of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// Records now stored.
    pub written: usize,
    /// Records refused for good; everything else in the batch was written.
    pub rejected: Vec<Rejected>,
}

/// A database that stores records.
#[async_trait]
pub trait Sink: Send {
    /// The sink's kind, as named in config (`sqlite`, ...).
    fn kind(&self) -> &'static str;

    /// Writes one batch, atomically where the database allows. On `Err`, nothing of the batch
    /// is stored and the caller may retry it whole if [`SinkError::is_retryable`].
    async fn write(&mut self, batch: Arc<Vec<Record>>) -> Result<WriteOutcome, SinkError>;
}
