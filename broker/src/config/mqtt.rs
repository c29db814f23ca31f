//! `[mqtt]`: the embedded broker's listeners, and what it keeps for clients (retained messages,
//! sessions).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[mqtt]`: the embedded broker's listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    pub listen: SocketAddr,
    /// Clients without credentials. Unset: allowed on a loopback listener only.
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
    /// The largest MQTT packet accepted, in bytes.
    pub max_packet_size: u32,
    /// QoS 1/2 messages in flight per connection (MQTT 5 clients are told this as receive-maximum).
    pub max_inflight: u16,
    pub max_connections: usize,
    /// How a device's client id must relate to its name: `exact` or `prefix` (`name:...`).
    #[serde(default)]
    pub client_id_rule: crate::devices::rules::ClientIdRule,
    /// `[mqtt.tls]`: a second listener, MQTT over TLS.
    #[serde(default)]
    pub tls: Option<MqttTlsSettings>,
    /// Messages per second one device may publish (bursts of one second's worth); 0: no limit.
    #[serde(default)]
    pub device_rate: u32,
    /// Client ids one registered device may be connected under at once; 0: no limit.
    #[serde(default)]
    pub max_connections_per_device: usize,
    /// What an MQTT 3.1.1 client whose publish is refused gets: `drop` or `disconnect`.
    #[serde(default)]
    pub refused_publish: crate::devices::rules::RefusedPublish,
    /// MQTT over WebSocket (subprotocol `mqtt`, any path), for browsers and gateways.
    #[serde(default)]
    pub ws_listen: Option<SocketAddr>,
    /// Topic aliases an MQTT 5 client may use in each direction; 0: none.
    #[serde(default = "default_topic_aliases")]
    pub topic_aliases: u16,
    /// `[mqtt.retain]`: retained messages.
    #[serde(default)]
    pub retain: MqttRetainSettings,
    /// `[mqtt.sessions]`: sessions kept for clients that ask for them.
    #[serde(default)]
    pub sessions: MqttSessionSettings,
}

fn default_topic_aliases() -> u16 {
    64
}

/// `[mqtt.retain]`: the retained messages Roost keeps (in `<data_dir>/mqtt/retained`, across
/// restarts). A retained publish over a limit is still delivered, but not retained (counted in
/// `roost_mqtt_retained_refused_total`); replacing or clearing a retained topic is always allowed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttRetainSettings {
    /// Retained topics at most.
    pub max_messages: usize,
    /// Payload bytes of all retained messages together, at most.
    pub max_bytes: u64,
}

impl Default for MqttRetainSettings {
    fn default() -> Self {
        MqttRetainSettings { max_messages: 100_000, max_bytes: 64 << 20 }
    }
}

/// `[mqtt.sessions]`: the sessions of clients that connect with clean session off (MQTT 3.1.1) or
/// a session expiry (MQTT 5): their subscriptions and the QoS 1/2 messages that arrive while they
/// are away, kept in memory, saved to `<data_dir>/mqtt/sessions` when Roost stops and checkpointed
/// without their messages between stops (docs/mqtt.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSessionSettings {
    /// How long a session outlives its connection, in seconds: an MQTT 3.1.1 persistent
    /// session's expiry, and the most an MQTT 5 client may ask for.
    pub expiry_secs: u64,
    /// Messages queued for one session while it is away, at most; beyond it the oldest are
    /// dropped and counted (`roost_mqtt_dropped_total`).
    pub max_queued: usize,
    /// How often, in seconds, the sessions are also written without their messages (when they
    /// changed), so that after a crash they come back with their subscriptions; 0: only at a stop.
    pub checkpoint_secs: u64,
}

impl Default for MqttSessionSettings {
    fn default() -> Self {
        MqttSessionSettings { expiry_secs: 7 * 24 * 3600, max_queued: 10_000, checkpoint_secs: 10 }
    }
}

/// `[mqtt.tls]`: MQTT over TLS, next to the plain listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsSettings {
    pub listen: SocketAddr,
    /// PEM files: the server's certificate (chain) and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM file of the CA that signs device certificates. Set: every client must show one, and
    /// its common name is the (registered) device it connects as.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// MQTT over secure WebSocket (wss), with the same certificates.
    #[serde(default)]
    pub ws_listen: Option<SocketAddr>,
}

impl MqttSettings {
    /// What can be checked without I/O: the key at fault and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_inflight == 0 {
            return Err(("mqtt.max_inflight", "must be at least 1".into()));
        }
        if self.max_packet_size < 1024 {
            return Err(("mqtt.max_packet_size", "must be at least 1024 bytes".into()));
        }
        if self.sessions.max_queued == 0 {
            return Err(("mqtt.sessions.max_queued", "must be at least 1".into()));
        }
        // rmqtt counts session expiry in milliseconds from now; keep it well inside that.
        if self.sessions.expiry_secs > 10 * 365 * 24 * 3600 {
            return Err(("mqtt.sessions.expiry_secs", "must be at most ten years".into()));
        }
        Ok(())
    }

    /// Whether clients without credentials may connect, after applying the loopback default.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or_else(|| self.listen.ip().is_loopback())
    }

    /// The same for the TLS listener (never, where it asks for client certificates).
    pub fn tls_anonymous_allowed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| {
            t.client_ca.is_none() && self.allow_anonymous.unwrap_or_else(|| t.listen.ip().is_loopback())
        })
    }
}
