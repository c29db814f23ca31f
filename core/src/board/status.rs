//! The `status` message: the retained [`Status`] a board publishes on
//! `roost/boards/{name}/status` (with an `offline` copy as its last will), and the protocol
//! version this build speaks.

use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::error::ProtocolError;
use super::json::{from_json, to_json};

/// The protocol version this build speaks. A board reports its own in [`Status::protocol_version`];
/// the server sends commands only to boards that speak this one.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a board is doing, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardState {
    /// Connected and ready for a request.
    Idle,
    /// Connected and running a request.
    Busy,
    /// Not connected (the last will, or a clean goodbye).
    Offline,
}

/// The retained message on `roost/boards/{name}/status`. Unknown fields are ignored, so a newer
/// board may add some without a new protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: BoardState,
    /// What the board runs on, e.g. `linux-x86_64`, `esp8266`, `micropython-unix`.
    pub platform: String,
    /// The board client's own version, e.g. `0.1.0`.
    pub client_version: String,
    /// The protocol version the board speaks; compare with [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Free memory in bytes, where the board knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory: Option<u64>,
    /// The directory every board path is relative to, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_dir: Option<String>,
    /// The largest `cmd` message in bytes the board accepts, if it is smaller than the broker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<u64>,
}

impl Status {
    /// The same status with the state `offline`: what a board registers as its last will.
    pub fn offline(&self) -> Status {
        Status { state: BoardState::Offline, ..self.clone() }
    }

    /// Whether the board speaks the protocol version of this build, so it may be sent commands.
    pub fn protocol_supported(&self) -> bool {
        self.protocol_version == PROTOCOL_VERSION
    }

    /// Parses a `status` payload.
    pub fn from_json(payload: &[u8]) -> Result<Status, ProtocolError> {
        from_json(payload, Channel::Status)
    }

    /// The `status` payload.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::test_support::pinned;

    #[test]
    fn status_wire_format_is_pinned() {
        let status = Status {
            state: BoardState::Idle,
            platform: "esp8266".into(),
            client_version: "0.1.0".into(),
            protocol_version: 1,
            free_memory: Some(21440),
            root_dir: Some("/".into()),
            max_payload: Some(4096),
        };
        pinned(
            &status,
            r#"{"state":"idle","platform":"esp8266","client_version":"0.1.0","protocol_version":1,"free_memory":21440,"root_dir":"/","max_payload":4096}"#,
        );
        let will = Status { free_memory: None, root_dir: None, max_payload: None, ..status.offline() };
        pinned(
            &will,
            r#"{"state":"offline","platform":"esp8266","client_version":"0.1.0","protocol_version":1}"#,
        );
    }

    #[test]
    fn status_ignores_unknown_fields_and_reports_its_version() {
        let status = Status::from_json(
            br#"{"state":"busy","platform":"linux","client_version":"9","protocol_version":2,"uptime":5}"#,
        )
        .unwrap();
        assert_eq!(status.state, BoardState::Busy);
        assert!(!status.protocol_supported());
        assert!(Status { protocol_version: PROTOCOL_VERSION, ..status }.protocol_supported());
    }
}
