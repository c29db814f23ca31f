//! The broker's hooks: ingest in `MessagePublishCheckAcl` (see `mqtt`), the connection count,
//! (marked `devices:`) credentials at CONNECT and where an authenticated device may publish,
//! and (marked `boards:`) the board rules for publishes, subscriptions and last wills, with
//! board topics handed to the board service instead of ingest.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::deferred_ack;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo, Id, PublishAclResult, PublishResult, SubscribeAclResult};
use roost_core::{envelope, topic, Message};
use tracing::warn;

use super::qos2::{ExactlyOnce, Qos2};
use crate::boards::acl::{self, PublishVerdict};
use crate::boards::BoardService;
use crate::devices::limits::{DeviceConnections, DeviceRate};
use crate::devices::rules::{self, ClientIdRule, Connect, DeviceAcl, RefusedPublish, Verdict};
use crate::devices::Devices;
use crate::ingest::{Closed, Ingest};
use crate::ratelimit::RateLimit;
use crate::stats::Stats;

#[derive(Clone)]
pub(super) struct Hooks(pub Arc<HookState>);

pub(super) struct HookState {
    pub ingest: Arc<Ingest>,
    pub stats: Arc<Stats>,
    pub boards: Arc<BoardService>,
    pub devices: Arc<Devices>,
    /// Whether the listener lets clients in without credentials.
    pub anonymous_allowed: bool,
    /// The same for the TLS listener, and rmqtt's id of it.
    pub tls_anonymous_allowed: bool,
    pub tls_listener: u16,
    /// What registered devices may publish and subscribe to.
    pub acl: DeviceAcl,
    /// `mqtt.max_connections_per_device`, when set.
    pub connections: Option<DeviceConnections>,
    /// `mqtt.device_rate`, when set.
    pub rate: Option<DeviceRate>,
    pub refused_publish: RefusedPublish,
    /// Refused publishes are logged at most this often.
    pub refusal_log: RateLimit,
    pub client_id_rule: ClientIdRule,
    /// QoS 2 messages resent after a reconnect are not stored twice.
    pub qos2: ExactlyOnce,
    /// Dropped messages are logged at most this often.
    pub drop_log: RateLimit,
}

impl HookState {
    /// devices: the registered device a session is, by its username.
    fn registered<'a>(&self, id: &'a Id) -> Option<&'a str> {
        id.username.as_deref().filter(|u| self.devices.is_registered(u))
    }

    /// devices: refuses a publish of `device` for `reason`: counted for the device and logged
    /// (rate-limited). MQTT 5 clients get the reason code in the PUBACK and stay connected; an
    /// MQTT 3.1.1 client, which cannot be told, is dropped or disconnected as
    /// `mqtt.refused_publish` says.
    async fn refuse_publish(
        &self,
        session: &Session,
        device: &str,
        topic: &str,
        (code, reason): (PublishAckReason, &str),
    ) -> ReturnType {
        self.devices.counters.publishes_denied.fetch_add(1, Relaxed);
        self.devices.refusals.count(device);
        if let Some(held_back) = self.refusal_log.check() {
            warn!(device, topic, reason, held_back, "publish refused");
        }
        let v5 = matches!(session.connect_info().await.as_deref(), Ok(ConnectInfo::V5(..)));
        let disconnect = !v5 && self.refused_publish == RefusedPublish::Disconnect;
        let result = PublishResult::reason_code(code, Some(reason.into()), disconnect);
        (false, Some(HookResult::PublishAclResult(PublishAclResult(result))))
    }

    /// devices: decides a CONNECT.
    async fn authenticate(&self, info: &ConnectInfo) -> AuthResult {
        let client_id: &str = &info.id().client_id;
        let username = info.username().map(|u| &**u);
        let password = info.password();
        let certificate = info.cert().map(|c| c.common_name.as_deref().unwrap_or(""));
        let connect = Connect { client_id, username, has_password: password.is_some(), certificate };
        let anonymous_allowed = if info.id().lid == self.tls_listener {
            self.tls_anonymous_allowed
        } else {
            self.anonymous_allowed
        };
        let verdict = rules::check_connect(connect, self.client_id_rule, anonymous_allowed, |n| {
            self.devices.is_registered(n)
        });
        let counters = &self.devices.counters;
        let refuse = |reason: &str, bad_credentials: bool| {
            warn!(client_id, username, remote = ?info.id().remote_addr, reason, "connection refused");
            if bad_credentials {
                counters.bad_credentials.fetch_add(1, Relaxed);
                AuthResult::BadUsernameOrPassword
            } else {
                counters.not_authorized.fetch_add(1, Relaxed);
                AuthResult::NotAuthorized
            }
        };
        // The device is who it says; it may still be over its connections.
        let admit = |device: &str| {
            if self.connections.as_ref().is_some_and(|c| !c.admits(device, client_id)) {
                self.devices.refusals.count(device);
                return refuse(
                    "the device has as many connections as it may (mqtt.max_connections_per_device)",
                    false,
                );
            }
            counters.accepted.fetch_add(1, Relaxed);
            AuthResult::Allow(false, None)
        };
        match verdict {
            Verdict::Anonymous => AuthResult::Allow(false, None),
            Verdict::Certified(device) => admit(device),
            Verdict::Verify(device) => {
                if self.devices.authenticate(device, password.map_or(&[][..], |p| &p[..])).await {
                    admit(device)
                } else {
                    refuse("wrong secret for the device", true)
                }
            }
            Verdict::BadCredentials(reason) => refuse(reason, true),
            Verdict::NotAuthorized(reason) => refuse(reason, false),
        }
    }
}

/// boards: a key for one client connection (a reconnect with the same client id is another).
fn conn_key(id: &Id) -> String {
    format!("{}|{:?}|{}", id.client_id, id.remote_addr, id.create_time)
}

/// boards: the client's identity for the board rules.
fn identity(id: &Id) -> acl::Identity<'_> {
    acl::Identity { client_id: &id.client_id, username: id.username.as_deref() }
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                let result = self.0.authenticate(info).await;
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let topic_name: &str = &publish.topic;
                let client_id: &str = &session.id.client_id;
                // devices: an authenticated device publishes telemetry under its own name only, and
                // every device at most `mqtt.device_rate` messages a second.
                if !acl::is_board_namespace(topic_name) {
                    let registered = self.0.registered(&session.id);
                    if let Some(device) = registered {
                        if !self.0.acl.may_publish(device, topic_name) {
                            let refused = (
                                PublishAckReason::NotAuthorized,
                                "outside the device's topics (acl.publish)",
                            );
                            return self.0.refuse_publish(session, device, topic_name, refused).await;
                        }
                    }
                    let device = registered.unwrap_or(client_id);
                    if self.0.rate.as_ref().is_some_and(|r| !r.allow(device, Instant::now())) {
                        let refused =
                            (PublishAckReason::QuotaExceeded, "over the message rate (mqtt.device_rate)");
                        return self.0.refuse_publish(session, device, topic_name, refused).await;
                    }
                }
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
                // A QoS 2 message resent after a reconnect was stored the first time.
                let qos2 = publish.packet_id.filter(|_| publish.qos == QoS::ExactlyOnce).map(|p| p.get());
                if let Some(packet_id) = qos2 {
                    if self.0.qos2.check(client_id, packet_id, publish.dup) == Qos2::Resent {
                        self.0.stats.qos2_resent.fetch_add(1, Relaxed);
                        return (true, acc);
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
                let stored = match self.0.ingest.accept(msg).await {
                    Ok(stored) => stored,
                    Err(Closed) => return shutting_down(),
                };
                // The session holds the PUBACK back until the message is stored, and reads the
                // connection's next publishes meanwhile (our patch to rmqtt, `deferred_ack`).
                let (state, client) = (self.0.clone(), client_id.to_owned());
                let wait = Box::pin(async move {
                    let stored = stored.wait().await.is_ok();
                    if let (true, Some(packet_id)) = (stored, qos2) {
                        state.qos2.taken(&client, packet_id);
                    }
                    stored
                });
                let stored = match deferred_ack::defer(wait) {
                    Ok(()) => true,
                    Err(wait) => wait.await,
                };
                if stored {
                    (true, acc)
                } else {
                    shutting_down()
                }
            }
            Parameter::ClientConnected(session) => {
                self.0.stats.connections.fetch_add(1, Relaxed);
                if let (Some(conns), Some(device)) = (&self.0.connections, self.0.registered(&session.id)) {
                    conns.connected(device, &session.id.client_id);
                }
                (true, acc)
            }
            Parameter::ClientDisconnected(session, reason) => {
                self.0.stats.connections.fetch_sub(1, Relaxed);
                // devices: a packet over mqtt.max_packet_size closes the connection (rmqtt's
                // codec refuses it); counted and said here.
                let reason = reason.to_string();
                if reason.contains("Max size exceeded") {
                    self.0.devices.counters.packets_too_large.fetch_add(1, Relaxed);
                    if let Some(held_back) = self.0.refusal_log.check() {
                        let client_id = &*session.id.client_id;
                        warn!(client_id, reason, held_back, "packet over mqtt.max_packet_size; disconnected");
                    }
                }
                if let (Some(conns), Some(device)) = (&self.0.connections, session.id.username.as_deref()) {
                    conns.disconnected(device, &session.id.client_id);
                }
                self.0.boards.on_disconnect(&conn_key(&session.id)); // boards:
                (true, acc)
            }
            Parameter::SessionTerminated(session, _) => {
                self.0.qos2.forget(&session.id.client_id);
                (true, acc)
            }
            Parameter::MessageDropped(to, from, publish, reason) => {
                self.0.stats.mqtt_dropped.fetch_add(1, Relaxed);
                if let Some(held_back) = self.0.drop_log.check() {
                    let to = to.as_ref().map(|id| id.client_id.to_string());
                    warn!(to, from = %from.id.client_id, topic = %publish.topic, reason = %reason, held_back,
                        "message for a subscriber dropped");
                }
                (true, acc)
            }
            // boards: no subscription to another board's commands or replies; devices: only
            // what `[acl]` grants a registered device.
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let filter: &str = &subscribe.topic_filter;
                let reason = match acl::check_subscribe(identity(&session.id), filter) {
                    Err(reason) => {
                        self.0.boards.counters.subscribes_denied.fetch_add(1, Relaxed);
                        reason
                    }
                    Ok(()) => match self.0.registered(&session.id) {
                        Some(device) if !self.0.acl.may_subscribe(device, filter) => {
                            self.0.devices.counters.subscribes_denied.fetch_add(1, Relaxed);
                            self.0.devices.refusals.count(device);
                            "outside the device's topics (acl.subscribe)"
                        }
                        _ => return (true, acc),
                    },
                };
                if let Some(held_back) = self.0.refusal_log.check() {
                    warn!(client_id = %session.id.client_id, filter, reason, held_back, "subscription refused");
                }
                let refused = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                (false, Some(HookResult::SubscribeAclResult(refused)))
            }
            // boards: a last will skips the publish ACL, so it is checked here. A will the client
            // could not have published is neutralised (rmqtt cannot drop it: it is rewritten to
            // an empty message on a `$` topic no wildcard matches).
            Parameter::MessagePublish(_, from, publish)
                if matches!(from.typ(), rmqtt::types::FromType::LastWill) =>
            {
                match acl::check_publish(identity(&from.id), &publish.topic) {
                    PublishVerdict::NotBoardTopic => match self.0.registered(&from.id) {
                        Some(device) if !self.0.acl.may_publish(device, &publish.topic) => {
                            self.0.devices.refusals.count(device);
                            warn!(device, topic = %publish.topic, "last will outside the device's topics refused");
                            neutralised(publish)
                        }
                        _ => (true, acc),
                    },
                    PublishVerdict::Allowed { board, channel } => {
                        if channel == roost_core::board::Channel::Status {
                            self.0.boards.on_will(&conn_key(&from.id), board, &publish.payload);
                        }
                        (true, acc)
                    }
                    PublishVerdict::Denied(reason) => {
                        self.0.boards.counters.wills_refused.fetch_add(1, Relaxed);
                        warn!(client_id = %from.id.client_id, topic = %publish.topic, reason, "last will refused");
                        neutralised(publish)
                    }
                }
            }
            _ => (true, acc),
        }
    }
}

/// A last will rewritten to an empty message on a `$` topic no wildcard matches (rmqtt cannot
/// drop a will).
fn neutralised(will: &rmqtt::types::Publish) -> ReturnType {
    let mut neutral = will.clone();
    neutral.inner.topic = "$roost/refused-will".into();
    neutral.inner.payload = Default::default();
    neutral.inner.retain = false;
    (false, Some(HookResult::Publish(neutral)))
}

/// Refuses a publish Roost can no longer take, closing the connection without a PUBACK.
fn shutting_down() -> ReturnType {
    let refused = PublishAclResult::rejected(true, Some("server shutting down".into()));
    (false, Some(HookResult::PublishAclResult(refused)))
}
