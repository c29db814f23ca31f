//! `roost-connectors`: the databases Roost writes records to.
//!
//! - [`Sink`]: the one interface every database implements: a batch of records in, a per-batch
//!   outcome out (how many were written, which were rejected and why). [`SinkConfig`] (a kind's
//!   typed options) and [`OpenSink`] (building the sink from them) are what a database adds.
//! - [`registry`]: the one table of kinds ([`KINDS`]); parses a `[[sinks]]` entry's options once
//!   into its kind's typed config ([`SinkOptions`]), with an error that lists the kinds that exist
//!   when the kind is unknown.
//! - one folder per database (`sqlite/`, `postgres/`, `mysql/`, `influxdb/`, `mongodb/`), each
//!   behind a cargo feature and holding the same files: `mod.rs` (what the kind is, what it
//!   exports), `config.rs` (serde, `deny_unknown_fields`, the [`SinkConfig`] impl: validation
//!   without I/O), `sink.rs` (the [`Sink`] and [`OpenSink`] impls), `schema.rs` (type and
//!   identifier mapping), `export.rs` (reading the records back: [`export::OpenSource`]).
//!   Unit tests sit beside the code they test (`#[cfg(test)] mod tests`).
//!   A folder also has `tests.rs` when it tests the sink's internals against the real database
//!   (`sqlite/`: real files; `influxdb/`: the HTTP answers the conformance suite cannot provoke);
//!   tests through the public interface, for every database, live in `connectors/tests/` (the
//!   conformance suite, the SQL sinks, PostgreSQL TLS, the documented queries).
//! - [`export`]: the read side every kind has too (`roost export`): a query, rows in time order,
//!   streamed in constant memory; each folder's `export.rs` implements it.
//! - `sql` and `replay`: what the typed SQL sinks (postgres, mysql) share: the schema policy and
//!   the write path, and writing a batch at its spool [`Position`] with its checkpoint.
//!
//! Adding a database: one folder, one line in [`KINDS`], one cargo feature
//! (`docs/sinks/adding-a-sink.md`).
//!
//! Batching, retries, backpressure and the spool belong to the caller (the broker's sink actor):
//! a sink writes what it is given, once, and says whether trying again could help; given the
//! batch's [`Position`] ([`Sink::write_at`]), it keeps a replay of that batch from being stored
//! twice where the database allows ([`Sink::replay_safety`]).

pub mod export;
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
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod replay;
pub mod secret;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use roost_core::Record;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

pub use registry::{open, Kind, SinkOptions, KINDS};

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

    /// Writes a batch with its position in the caller's queue. Sinks that can, make a replay
    /// of the same position a no-op: SQL sinks store `position.seq` in the same transaction
    /// (see [`Sink::committed`]) and write nothing for a `seq` not above the stored one;
    /// document stores derive each record's key from `position.ids`.
    /// The default ignores the position: a replay after a crash may store records twice.
    async fn write_at(
        &mut self,
        batch: Arc<Vec<Record>>,
        position: &Position,
    ) -> Result<WriteOutcome, SinkError> {
        let _ = position;
        self.write(batch).await
    }

    /// The highest `seq` stored for `stream` by [`Sink::write_at`]; the caller skips spool
    /// entries up to it when it resumes, and must never hand a sink a new batch with a `seq`
    /// at or below it (that batch would be skipped). `None` when the sink keeps no positions
    /// or has none yet.
    async fn committed(&mut self, stream: &str) -> Result<Option<u64>, SinkError> {
        let _ = stream;
        Ok(None)
    }

    /// How a replayed batch is kept from being stored twice, for status and docs: `checkpoint`
    /// (position stored with the batch), `keys` (record keys from ids), `natural` (the database
    /// overwrites the same point), or `none`.
    fn replay_safety(&self) -> &'static str {
        "none"
    }
}

/// Where a batch sits in the caller's durable queue (the sink's spool), so that a sink can make
/// writing a batch again after a crash a no-op.
#[derive(Debug, Clone)]
pub struct Position {
    /// The queue's name: the sink's configured name and its spool's id (`<sink>/<id>`), so a
    /// spool made again, or another node's spool, never shares positions with this one.
    pub stream: String,
    /// The sequence number of the batch's last spool entry. Batches of a stream come with
    /// increasing `seq`; a replayed batch has the same `seq` and the same records.
    pub seq: u64,
    /// One id per record of the batch, in order: unique within the stream and the same when
    /// the batch is replayed.
    pub ids: Arc<Vec<u64>>,
}

/// The table where SQL sinks keep each stream's last written `seq` ([`Sink::write_at`]). The
/// `-` keeps it from ever being a measurement's table or index ([`names::index_name`]): a
/// measurement and a table prefix are identifiers, which hold no `-`.
pub const CHECKPOINT_TABLE: &str = "roost-checkpoints";

/// A kind's `[[sinks]]` options, typed: serde with `deny_unknown_fields` (a misspelt option is an
/// error naming it) and every default filled in, so serializing it shows the effective options.
pub trait SinkConfig: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// Checks the options without touching the database, the network or the file system.
    fn validate(&self) -> Result<(), SinkError>;
}

/// A sink built from its kind's typed options: what the registry opens.
#[async_trait]
pub trait OpenSink: Sink + Sized + 'static {
    /// The kind's options.
    type Config: SinkConfig;

    /// Builds the sink. `kind` is the name it was configured under (one config may serve several
    /// kinds: `PostgresConfig` serves `postgres` and `timescaledb`). Sinks whose database is a
    /// server connect on the first write, so Roost starts while the database is down.
    async fn open(config: Self::Config, kind: &'static str, ctx: &SinkContext) -> Result<Self, SinkError>;
}

/// What a sink may need from the server to open.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// Roost's data directory; relative paths in sink options are resolved against it.
    pub data_dir: PathBuf,
}
