//! `roost-processors`: what turns an MQTT message into records.
//!
//! - [`Processor`]: the one interface every processor implements, called on a worker thread,
//!   one message at a time.
//! - [`json_map`]: the built-in JSON mapping, used by every pipeline that names no processor.
//!
//! - [`wasm`]: user processors, WebAssembly components run by wasmtime, with their versions.
//! - [`pool`]: the worker threads processors run on, off the async runtime.

pub mod json_map;
pub mod pool;
pub mod wasm;

use roost_core::{Message, Record};
use thiserror::Error;

pub use json_map::{JsonMapping, MappingError};

/// Why a processor produced no records for a message.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The payload could not be mapped to records.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// A processor module failed the message (refused it, trapped, broke a limit).
    #[error("processor {module} v{version}: {reason}")]
    Module { module: String, version: u32, reason: String },
    /// The processor's host code panicked (a bug in Roost, not in the module).
    #[error("processor {0} panicked in the host; see the log")]
    Panicked(String),
    /// The pipeline names a processor that has not been uploaded.
    #[error("processor {0} is not uploaded (roost processor upload {0} FILE.wasm)")]
    NotLoaded(String),
}

/// Turns one message into zero or more records.
///
/// Synchronous on purpose: processors run on worker threads, never on the async threads that
/// serve MQTT and HTTP. Returning no records filters the message out.
pub trait Processor: Send {
    /// The name shown in logs, metrics and the dead-letter store.
    fn name(&self) -> &str;

    /// Appends the records for `msg` to `out`. On error, `out` is left as it was.
    fn process(&mut self, msg: &Message, out: &mut Vec<Record>) -> Result<(), ProcessError>;
}
