//! `roost-core`: the types every other Roost crate shares, and the pure functions over them.
//!
//! - [`record`]: what sinks store (measurement, time, device, tags, fields), the same shape
//!   Telegraf and InfluxDB use.
//! - [`envelope`]: what a processor receives for one MQTT message.
//! - [`topic`]: MQTT topic filters and the `devices/{device}/{measurement}` convention.
//! - [`ident`]: the rule for names that come from device data and end up as table or column names.
//!
//! Nothing here does I/O; everything else depends on this crate and it depends on nothing of ours.

pub mod envelope;
pub mod ident;
pub mod record;
pub mod topic;

pub use envelope::Message;
pub use record::{FieldValue, Record};
