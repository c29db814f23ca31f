//! boards: [`CmdSender`] publishes board commands in-process, as the system
//! (`SessionState::forwards` from a system sender): the only way anything reaches a `cmd` topic.
//! devices: [`Kicker`] disconnects a revoked (or rotated) device's sessions.

use async_trait::async_trait;
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{From as MsgFrom, Id, Publish as RmqttPublish};
use roost_core::envelope;

use crate::boards::{CmdPublisher, PublishError};
use crate::devices::Disconnect;

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

/// Disconnects every session authenticated as a device.
pub(super) struct Kicker {
    pub scx: ServerContext,
}

impl Disconnect for Kicker {
    fn disconnect(&self, device: &str) {
        let (scx, device) = (self.scx.clone(), device.to_owned());
        tokio::spawn(async move {
            let ids: Vec<Id> = {
                let shared = scx.extends.shared().await;
                shared
                    .iter()
                    .map(|e| e.id())
                    .filter(|id| id.username.as_deref() == Some(device.as_str()))
                    .collect()
            };
            for id in ids {
                let entry = { scx.extends.shared().await.entry(id.clone()) };
                if let Ok(mut locked) = entry.try_lock().await {
                    let _ = locked.kick(true, true, true).await;
                    tracing::info!(device, client_id = %id.client_id, "device disconnected: its credentials changed");
                }
            }
        });
    }
}
