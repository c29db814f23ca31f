//! How the board service publishes requests: the [`CmdPublisher`] the broker implements
//! in-process, and its [`PublishError`].

use async_trait::async_trait;
use thiserror::Error;

/// Why a request could not be published on a board's `cmd` topic.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("the mqtt broker is not running")]
    NotRunning,
    #[error("the mqtt broker did not take the command: {0}")]
    Broker(String),
}

/// How the service publishes a request on a board's `cmd` topic: implemented by the broker,
/// in-process (QoS 1, not retained).
#[async_trait]
pub trait CmdPublisher: Send + Sync {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError>;
}
