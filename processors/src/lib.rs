//! `roost-processors`: what turns an MQTT message into records.
//!
//! - [`Processor`]: the one interface every processor implements, called on a worker thread,
//!   one message at a time.
//! - [`json_map`]: the built-in JSON mapping, used by every pipeline that names no processor.
//!
//! The WebAssembly host (user modules under wasmtime) lives here too once it lands; it implements
//! the same trait.

pub mod json_map;

use roost_core::{Message, Record};
use thiserror::Error;

pub use json_map::{JsonMapping, MappingError};

/// Why a processor produced no records for a message.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The payload could not be mapped to records.
    #[error(transparent)]
    Mapping(#[from] MappingError),
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
