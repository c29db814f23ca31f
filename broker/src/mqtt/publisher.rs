//! boards: [`CmdSender`] publishes board commands in-process, as the system
//! (`SessionState::forwards` from a system sender): the only way anything reaches a `cmd` topic.
//! devices: [`Kicker`] disconnects a revoked (or rotated) device's sessions, with [`kick`]. (When
//! the broker stops, `sessions::save` disconnects every client, keeping what it must.)

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
            let kicked = kick(&scx, |id| id.username.as_deref() == Some(device.as_str())).await;
            for id in kicked {
                tracing::info!(device, client_id = %id.client_id, "device disconnected: its credentials changed");
            }
        });
    }
}

/// Disconnects every session `which` selects, all at once; the ids of those it disconnected.
pub(super) async fn kick(scx: &ServerContext, which: impl Fn(&Id) -> bool) -> Vec<Id> {
    let ids: Vec<Id> = { scx.extends.shared().await.iter().map(|e| e.id()).filter(|id| which(id)).collect() };
    let kicks = ids.into_iter().map(|id| async move {
        let entry = { scx.extends.shared().await.entry(id.clone()) };
        let mut locked = entry.try_lock().await.ok()?;
        let _ = locked.kick(true, true, true).await;
        Some(id)
    });
    futures::future::join_all(kicks).await.into_iter().flatten().collect()
}
