//! boards: [`CmdSender`] publishes board commands in-process, as the system
//! (`SessionState::forwards` from a system sender): the only way anything reaches a `cmd` topic.

use async_trait::async_trait;
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{From as MsgFrom, Id, Publish as RmqttPublish};
use roost_core::envelope;

use crate::boards::{CmdPublisher, PublishError};

/// Publishes board commands from inside the broker, as the system.
pub(super) struct CmdSender {
    pub scx: ServerContext,
}

#[async_trait]
impl CmdPublisher for CmdSender {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        let publish = CodecPublish {
            dup: false,
            retain: false,
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: None,
            payload: payload.into(),
            properties: None,
        };
        let publish =
            RmqttPublish::new(Box::new(publish), None, None, Some(envelope::now_ns() as i64 / 1_000_000));
        let from = MsgFrom::from_system(Id::from(self.scx.node.id(), "roost".into()));
        SessionState::forwards(&self.scx, from, publish, false, None)
            .await
            .map_err(|e| PublishError::Broker(e.to_string()))
    }
}
