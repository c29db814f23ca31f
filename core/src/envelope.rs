//! The message envelope: one MQTT PUBLISH as a processor sees it.

use std::time::{SystemTime, UNIX_EPOCH};

/// One accepted MQTT message, with everything a processor may need to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The MQTT topic it was published to.
    pub topic: String,
    /// The MQTT client id of the publisher.
    pub client_id: String,
    /// The device, from the topic convention (`devices/{device}/...`), else the client id.
    pub device: String,
    /// The payload, as received.
    pub payload: Vec<u8>,
    /// When the broker accepted it, in nanoseconds since the Unix epoch.
    pub received_at: i64,
    /// The QoS it was published with (0, 1 or 2).
    pub qos: u8,
    /// The retain flag.
    pub retain: bool,
    /// MQTT 5 user properties, in order (empty for MQTT 3.1.1).
    pub user_properties: Vec<(String, String)>,
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
