//! `roost-core`: the types every other Roost crate shares, and the pure functions over them.
//!
//! - [`record`]: what sinks store (measurement, time, device, tags, fields), the same shape
//!   Telegraf and InfluxDB use.
//! - [`envelope`]: what a processor receives for one MQTT message.
//! - [`topic`]: MQTT topic filters and the `devices/{device}/{measurement}` convention.
//! - [`ident`]: the rule for names that come from device data and end up as table or column names.
//! - [`board`]: the board command channel's wire protocol: topics, board names, the `status`,
//!   `cmd` and `reply` messages, upload chunk sizing (documented in `docs/board-protocol.md`).
//! - [`hostlist`]: hostlist ranges (`esp8266-0[08-11],wipy2-[1,3,7]`), expanded into board names
//!   and compressed back.
//!
//! Nothing here does I/O; everything else depends on this crate and it depends on nothing of ours.

pub mod board;
pub mod envelope;
pub mod hostlist;
pub mod ident;
pub mod record;
pub mod topic;

pub use envelope::Message;
pub use record::{FieldValue, Record};
