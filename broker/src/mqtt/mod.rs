//! The embedded MQTT broker: `rmqtt` as a library. Every rmqtt type stays inside this module, so
//! the broker can be swapped without touching the rest of Roost.
//!
//! Ingest happens in rmqtt's `MessagePublishCheckAcl` hook, which runs for every PUBLISH from a
//! client after `MessagePublish` and before the PUBACK: the hook decides whether the publish is
//! allowed and, if so, awaits [`Ingest::accept`] there. So only allowed messages are ingested, a
//! QoS 1 PUBACK is sent only once the message is queued in every matching pipeline, and a full
//! pipeline slows the publisher down. (`MessagePublish` itself runs before the ACL check, which is
//! why ingest does not use it.)
//!
//! Boards (marked `boards:` below): publishes under `roost/boards/` are checked against the
//! board rules ([`crate::boards::acl`]) in the same ACL hook and handed to the board service
//! instead of ingest; subscriptions and last wills are checked too; disconnects are reported;
//! and [`CmdSender`] publishes board commands in-process (`SessionState::forwards` from a system
//! sender), the only way anything reaches a `cmd` topic.
//!
//! rmqtt has no graceful-shutdown call: [`Broker::stop`] stops accepting connections by aborting
//! the listener task, then kicks every session.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::PublishAclResult;
// boards:
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::session::SessionState;
use rmqtt::types::{From as MsgFrom, Id, Publish as RmqttPublish, SubscribeAclResult};
use roost_core::{envelope, topic, Message};
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::boards::acl::{self, PublishVerdict};
use crate::boards::{BoardService, CmdPublisher};
use crate::ingest::Ingest;
use crate::stats::Stats;

/// The listener's settings, as the rest of Roost knows them.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    pub allow_anonymous: bool,
    pub max_packet_size: u32,
    pub max_inflight: u16,
    pub max_connections: usize,
}

#[derive(Debug, Error)]
pub enum MqttError {
    #[error("cannot listen on {addr} (setting mqtt.listen): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running embedded broker.
pub struct Broker {
    scx: ServerContext,
    server: JoinHandle<()>,
    local_addr: SocketAddr,
}

impl Broker {
    /// Binds the listener, installs the hooks and starts serving.
    pub async fn start(
        cfg: ListenerConfig,
        ingest: Arc<Ingest>,
        stats: Arc<Stats>,
        boards: Arc<BoardService>,
    ) -> Result<Broker, MqttError> {
        let bind_err = |e: rmqtt::Error| MqttError::Bind {
            addr: cfg.listen,
            source: match e.downcast::<std::io::Error>() {
                Ok(io) => io,
                Err(other) => std::io::Error::other(other.to_string()),
            },
        };
        let listener = Builder::new()
            .name("roost/tcp")
            .laddr(cfg.listen)
            .allow_anonymous(cfg.allow_anonymous)
            .max_packet_size(cfg.max_packet_size)
            .max_inflight(NonZeroU16::new(cfg.max_inflight).unwrap_or(NonZeroU16::MIN))
            .max_connections(cfg.max_connections)
            .nodelay(true)
            // A restarted Roost binds its port again at once, even while connections of the
            // previous run (boards reconnecting) linger in TIME_WAIT.
            .reuseaddr(Some(true))
            .bind()
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let listener = listener.tcp().map_err(bind_err)?;

        let scx = ServerContext::new().build().await;
        let register = scx.extends.hook_mgr().register();
        let hooks = Hooks(Arc::new(HookState { ingest, stats, boards: boards.clone() }));
        register.add(Type::MessagePublishCheckAcl, Box::new(hooks.clone())).await;
        // boards: subscription ACL and last wills.
        register.add(Type::ClientSubscribeCheckAcl, Box::new(hooks.clone())).await;
        register.add(Type::MessagePublish, Box::new(hooks.clone())).await;
        register.add(Type::ClientConnected, Box::new(hooks.clone())).await;
        register.add(Type::ClientDisconnected, Box::new(hooks)).await;
        register.start().await;
        boards.set_publisher(Arc::new(CmdSender { scx: scx.clone() }));

        // rmqtt keys listeners by port; with port 0 the key would be 0, so give it one.
        let server = MqttServer::new(scx.clone()).listener_by_id(listener, 1).build();
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                warn!(error = %e, "mqtt server stopped");
            }
        });
        info!(addr = %local_addr, anonymous = cfg.allow_anonymous, "mqtt listening");
        Ok(Broker { scx, server, local_addr })
    }

    /// The address the listener is bound to (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and disconnects every client, waiting up to `timeout`.
    pub async fn stop(&self, timeout: Duration) {
        self.server.abort();
        let ids: Vec<_> = { self.scx.extends.shared().await.iter().map(|e| e.id()).collect() };
        let kicks = ids.into_iter().map(|id| {
            let scx = self.scx.clone();
            async move {
                let entry = { scx.extends.shared().await.entry(id) };
                if let Ok(mut locked) = entry.try_lock().await {
                    let _ = locked.kick(true, true, true).await;
                }
            }
        });
        if tokio::time::timeout(timeout, futures::future::join_all(kicks)).await.is_err() {
            warn!("some mqtt sessions did not disconnect in time");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Hooks(Arc<HookState>);

struct HookState {
    ingest: Arc<Ingest>,
    stats: Arc<Stats>,
    boards: Arc<BoardService>,
}

/// boards: a key for one client connection (a reconnect with the same client id is another).
fn conn_key(id: &Id) -> String {
    format!("{}|{:?}|{}", id.client_id, id.remote_addr, id.create_time)
}

/// boards: the client's identity for the board rules.
fn identity(id: &Id) -> acl::Identity<'_> {
    acl::Identity { client_id: &id.client_id, username: id.username.as_deref() }
}

/// boards: publishes board commands from inside the broker, as the system.
struct CmdSender {
    scx: ServerContext,
}

#[async_trait]
impl CmdPublisher for CmdSender {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
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
        SessionState::forwards(&self.scx, from, publish, false, None).await.map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let topic_name: &str = &publish.topic;
                let client_id: &str = &session.id.client_id;
                // boards: board topics go to the board service, never to ingest.
                match acl::check_publish(identity(&session.id), topic_name) {
                    PublishVerdict::NotBoardTopic => {}
                    PublishVerdict::Allowed { board, channel } => {
                        let conn = conn_key(&session.id);
                        self.0.boards.on_publish(&conn, board, channel, &publish.payload).await;
                        return (true, acc);
                    }
                    PublishVerdict::Denied(reason) => {
                        self.0.boards.counters.publishes_denied.fetch_add(1, Relaxed);
                        warn!(
                            client_id,
                            topic = topic_name,
                            reason,
                            "board topic publish refused; disconnecting"
                        );
                        let refused = PublishAclResult::rejected(true, Some(reason.into()));
                        return (false, Some(HookResult::PublishAclResult(refused)));
                    }
                }
                let device = match topic::device_topic(topic_name) {
                    Some((d, _)) => d.to_owned(),
                    None => client_id.to_owned(),
                };
                let user_properties = publish
                    .properties
                    .as_ref()
                    .map(|p| p.user_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
                    .unwrap_or_default();
                let msg = Message {
                    topic: topic_name.to_owned(),
                    client_id: client_id.to_owned(),
                    device,
                    payload: publish.payload.to_vec(),
                    received_at: envelope::now_ns(),
                    qos: publish.qos as u8,
                    retain: publish.retain,
                    user_properties,
                };
                match self.0.ingest.accept(msg).await {
                    Ok(()) => (true, acc),
                    Err(_closed) => {
                        let refused = PublishAclResult::rejected(true, Some("server shutting down".into()));
                        (false, Some(HookResult::PublishAclResult(refused)))
                    }
                }
            }
            Parameter::ClientConnected(_) => {
                self.0.stats.connections.fetch_add(1, Relaxed);
                (true, acc)
            }
            Parameter::ClientDisconnected(session, _) => {
                self.0.stats.connections.fetch_sub(1, Relaxed);
                self.0.boards.on_disconnect(&conn_key(&session.id)); // boards:
                (true, acc)
            }
            // boards: no subscription to another board's commands or replies.
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                match acl::check_subscribe(identity(&session.id), &subscribe.topic_filter) {
                    Ok(()) => (true, acc),
                    Err(reason) => {
                        self.0.boards.counters.subscribes_denied.fetch_add(1, Relaxed);
                        warn!(client_id = %session.id.client_id, filter = %subscribe.topic_filter, reason, "subscription refused");
                        let refused = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                        (false, Some(HookResult::SubscribeAclResult(refused)))
                    }
                }
            }
            // boards: a last will skips the publish ACL, so it is checked here. A will the client
            // could not have published is neutralised (rmqtt cannot drop it: it is rewritten to
            // an empty message on a `$` topic no wildcard matches).
            Parameter::MessagePublish(_, from, publish)
                if matches!(from.typ(), rmqtt::types::FromType::LastWill) =>
            {
                match acl::check_publish(identity(&from.id), &publish.topic) {
                    PublishVerdict::NotBoardTopic => (true, acc),
                    PublishVerdict::Allowed { board, channel } => {
                        if channel == roost_core::board::Channel::Status {
                            self.0.boards.on_will(&conn_key(&from.id), board, &publish.payload);
                        }
                        (true, acc)
                    }
                    PublishVerdict::Denied(reason) => {
                        self.0.boards.counters.wills_refused.fetch_add(1, Relaxed);
                        warn!(client_id = %from.id.client_id, topic = %publish.topic, reason, "last will refused");
                        let mut neutral = (*publish).clone();
                        neutral.inner.topic = "$roost/refused-will".into();
                        neutral.inner.payload = Default::default();
                        neutral.inner.retain = false;
                        (false, Some(HookResult::Publish(neutral)))
                    }
                }
            }
            _ => (true, acc),
        }
    }
}
