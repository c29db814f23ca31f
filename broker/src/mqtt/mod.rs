//! The embedded MQTT broker: `rmqtt` as a library. Every rmqtt type stays inside this module, so
//! the broker can be swapped without touching the rest of Roost.
//!
//! Ingest happens in rmqtt's `MessagePublishCheckAcl` hook (`hooks`), which runs for every PUBLISH from a
//! client after `MessagePublish` and before the PUBACK: the hook decides whether the publish is
//! allowed and, if so, awaits [`Ingest::accept`] there. So only allowed messages are ingested, a
//! QoS 1 PUBACK is sent only once the message is queued in every matching pipeline, and a full
//! pipeline slows the publisher down. (`MessagePublish` itself runs before the ACL check, which is
//! why ingest does not use it.)
//!
//! Boards (marked `boards:` in `hooks`): publishes under `roost/boards/` are checked against the
//! board rules ([`crate::boards::acl`]) in the same ACL hook and handed to the board service
//! instead of ingest; subscriptions and last wills are checked too; disconnects are reported;
//! and `publisher::CmdSender` publishes board commands in-process (`SessionState::forwards` from
//! a system sender), the only way anything reaches a `cmd` topic.
//!
//! rmqtt has no graceful-shutdown call: [`Broker::stop`] stops accepting connections by aborting
//! the listener task, then kicks every session.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::hooks::{HookState, Hooks};
use self::publisher::{CmdSender, Kicker};
use self::retain::RetainStore;
use self::shared_subs::RoundRobin;
use crate::boards::BoardService;
use crate::config::MqttRetainSettings;
use crate::devices::limits::{DeviceConnections, DeviceRate};
use crate::devices::rules::{ClientIdRule, DeviceAcl, RefusedPublish};
use crate::devices::Devices;
use crate::ingest::Ingest;
use crate::ratelimit::RateLimit;
use crate::stats::Stats;

mod hooks;
mod publisher;
mod qos2;
mod retain;
mod sessions;
mod shared_subs;
mod state_file;

/// The listener's settings, as the rest of Roost knows them.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    pub allow_anonymous: bool,
    pub max_packet_size: u32,
    pub max_inflight: u16,
    pub max_connections: usize,
    pub client_id_rule: ClientIdRule,
    pub tls: Option<TlsListenerConfig>,
    /// Messages per second per device; 0: no limit.
    pub device_rate: u32,
    /// Client ids per registered device; 0: no limit.
    pub max_connections_per_device: usize,
    pub refused_publish: RefusedPublish,
    pub acl: DeviceAcl,
    /// MQTT over WebSocket.
    pub ws_listen: Option<SocketAddr>,
    pub topic_aliases: u16,
    pub retain: MqttRetainSettings,
    /// How long a kept session outlives its connection (also the most an MQTT 5 client may ask).
    pub session_expiry: Duration,
    /// Messages queued per session at most.
    pub max_queued: usize,
    /// How often the kept sessions are checkpointed (without their messages); none: only at a stop.
    pub session_checkpoint: Option<Duration>,
    /// Where the broker keeps retained messages and sessions across restarts.
    pub state_dir: PathBuf,
}

/// The MQTT-over-TLS listener, next to the plain one.
#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    pub listen: SocketAddr,
    /// PEM: the server's certificate chain and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM: with it, every client must show a certificate this CA signed, whose common name is
    /// a registered device.
    pub client_ca: Option<PathBuf>,
    pub allow_anonymous: bool,
    /// MQTT over secure WebSocket, with the same certificates.
    pub ws_listen: Option<SocketAddr>,
}

/// rmqtt's ids of the listeners (which the hooks see in a session's id).
const TCP_LISTENER: u16 = 1;
const TLS_LISTENER: u16 = 2;
const WS_LISTENER: u16 = 3;
const WSS_LISTENER: u16 = 4;

#[derive(Debug, Error)]
pub enum MqttError {
    #[error("cannot listen on {addr} (setting {setting}): {source}")]
    Bind { addr: SocketAddr, setting: &'static str, source: std::io::Error },
    #[error("cannot set up TLS on {addr} (settings mqtt.tls.cert, key, client_ca): {message}")]
    Tls { addr: SocketAddr, message: String },
}

/// A running embedded broker.
pub struct Broker {
    scx: ServerContext,
    server: JoinHandle<()>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    retain: RetainStore,
    state_dir: PathBuf,
    /// The checkpoint task, and how to stop it.
    checkpoints: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Broker {
    /// Binds the listener, installs the hooks and starts serving.
    pub async fn start(
        cfg: ListenerConfig,
        ingest: Arc<Ingest>,
        stats: Arc<Stats>,
        boards: Arc<BoardService>,
        devices: Arc<Devices>,
    ) -> Result<Broker, MqttError> {
        let (listener, local_addr) = bind(&cfg, cfg.listen, "mqtt.listen", |b| b)?;
        let listener = listener.tcp().map_err(|e| bind_error(local_addr, "mqtt.listen", e))?;
        let mut extra = Vec::new();
        if let Some(addr) = cfg.ws_listen {
            let (ws, addr) = bind(&cfg, addr, "mqtt.ws_listen", |b| b)?;
            extra.push((ws.ws().map_err(|e| bind_error(addr, "mqtt.ws_listen", e))?, addr, WS_LISTENER));
        }
        let mut tls_addr = None;
        if let Some(tls) = &cfg.tls {
            let (listener, addr) = bind(&cfg, tls.listen, "mqtt.tls.listen", |b| tls_builder(b, tls))?;
            let listener = listener.tls().map_err(|e| MqttError::Tls { addr, message: format!("{e:#}") })?;
            info!(%addr, client_certificates = tls.client_ca.is_some(), "mqtt over tls listening");
            extra.push((listener, addr, TLS_LISTENER));
            tls_addr = Some(addr);
            if let Some(addr) = tls.ws_listen {
                let (wss, addr) = bind(&cfg, addr, "mqtt.tls.ws_listen", |b| tls_builder(b, tls))?;
                let wss = wss.wss().map_err(|e| MqttError::Tls { addr, message: format!("{e:#}") })?;
                extra.push((wss, addr, WSS_LISTENER));
            }
        }

        let scx = ServerContext::new().build().await;
        let register = scx.extends.hook_mgr().register();
        let hooks = Hooks(Arc::new(HookState {
            ingest,
            stats: stats.clone(),
            boards: boards.clone(),
            devices: devices.clone(),
            anonymous_allowed: cfg.allow_anonymous,
            tls_anonymous_allowed: cfg.tls.as_ref().is_some_and(|t| t.allow_anonymous),
            tls_listener: TLS_LISTENER,
            acl: cfg.acl.clone(),
            connections: (cfg.max_connections_per_device > 0)
                .then(|| DeviceConnections::new(cfg.max_connections_per_device)),
            rate: (cfg.device_rate > 0).then(|| DeviceRate::new(cfg.device_rate)),
            refused_publish: cfg.refused_publish,
            refusal_log: RateLimit::new(10, Duration::from_secs(10)),
            client_id_rule: cfg.client_id_rule,
            qos2: Default::default(),
            drop_log: RateLimit::new(10, Duration::from_secs(10)),
        }));
        register.add(Type::ClientAuthenticate, Box::new(hooks.clone())).await;
        register.add(Type::MessagePublishCheckAcl, Box::new(hooks.clone())).await;
        // boards: subscription ACL and last wills.
        register.add(Type::ClientSubscribeCheckAcl, Box::new(hooks.clone())).await;
        register.add(Type::MessagePublish, Box::new(hooks.clone())).await;
        register.add(Type::ClientConnected, Box::new(hooks.clone())).await;
        register.add(Type::ClientDisconnected, Box::new(hooks.clone())).await;
        register.add(Type::SessionTerminated, Box::new(hooks.clone())).await;
        register.add(Type::MessageDropped, Box::new(hooks)).await;
        register.start().await;
        boards.set_publisher(Arc::new(CmdSender { scx: scx.clone() }));
        devices.set_disconnect(Arc::new(Kicker { scx: scx.clone() }));
        let retain = RetainStore::open(&cfg.state_dir, cfg.retain.clone(), stats).await;
        *scx.extends.retain_mut().await = Box::new(retain.clone());
        *scx.extends.shared_subscription_mut().await = Box::new(RoundRobin::default());

        // rmqtt keys listeners by port unless given ids; with port 0 the key would be 0.
        let mut server = MqttServer::new(scx.clone()).listener_by_id(listener, TCP_LISTENER);
        for (listener, addr, id) in extra {
            if id != TLS_LISTENER {
                info!(%addr, tls = id == WSS_LISTENER, "mqtt over websocket listening");
            }
            server = server.listener_by_id(listener, id);
        }
        let server = server.build();
        // Sessions saved at the last stop come back before any client can connect.
        sessions::restore(&scx, &cfg.state_dir).await;
        let checkpoints = cfg.session_checkpoint.map(|every| {
            let (scx, dir) = (scx.clone(), cfg.state_dir.clone());
            let stop = CancellationToken::new();
            let stopped = stop.clone();
            let task = tokio::spawn(async move {
                let mut last = 0;
                loop {
                    // A checkpoint runs to its end: a stop never leaves a write in flight.
                    if let Err(e) = sessions::checkpoint(&scx, &dir, &mut last).await {
                        warn!(error = %e, "cannot checkpoint the persistent sessions; will retry");
                    }
                    tokio::select! {
                        _ = stopped.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            });
            (stop, task)
        });
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                warn!(error = %e, "mqtt server stopped");
            }
        });
        info!(addr = %local_addr, anonymous = cfg.allow_anonymous, "mqtt listening");
        Ok(Broker {
            scx,
            server,
            local_addr,
            tls_addr,
            retain,
            state_dir: cfg.state_dir,
            checkpoints: Mutex::new(checkpoints),
        })
    }

    /// The address of the TLS listener, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address the listener is bound to (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and disconnects every client, waiting up to `timeout`; saves
    /// the sessions kept for clients and the retained messages.
    pub async fn stop(&self, timeout: Duration) {
        self.server.abort();
        // A checkpoint must not overwrite the sessions saved below, messages and all.
        let checkpoints = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = checkpoints {
            stop.cancel();
            let _ = task.await;
        }
        match tokio::time::timeout(timeout, sessions::save(&self.scx, &self.state_dir)).await {
            Ok(Ok(saved)) => {
                info!(sessions = saved.sessions, messages = saved.messages, "persistent sessions saved")
            }
            Ok(Err(e)) => warn!(error = %e, "cannot save the persistent sessions; they are lost"),
            Err(_) => warn!("some mqtt sessions did not disconnect in time; persistent sessions not saved"),
        }
        self.retain.save().await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Binds a listener on `addr` (`setting` names it in errors) with Roost's settings and what
/// `configure` adds; the bound listener (to be made a plain or a TLS one) and its address.
fn bind(
    cfg: &ListenerConfig,
    addr: SocketAddr,
    setting: &'static str,
    configure: impl FnOnce(Builder) -> Builder,
) -> Result<(Listener, SocketAddr), MqttError> {
    let builder = Builder::new()
        .name(setting)
        .laddr(addr)
        // Every CONNECT goes through the authenticate hook, which applies the listener's
        // anonymous policy itself (rmqtt would skip the hook for a client without a
        // username, and so let it take a registered device's client id).
        .allow_anonymous(false)
        .max_packet_size(cfg.max_packet_size)
        .max_inflight(NonZeroU16::new(cfg.max_inflight).unwrap_or(NonZeroU16::MIN))
        .max_connections(cfg.max_connections)
        .nodelay(true)
        .max_topic_aliases(cfg.topic_aliases)
        .max_mqueue_len(cfg.max_queued)
        // A 3.1.1 persistent session's expiry, and the most an MQTT 5 client may ask for (rmqtt
        // reads zero as no limit). Messages without an expiry of their own keep as long.
        .session_expiry_interval(cfg.session_expiry)
        .max_session_expiry_interval(cfg.session_expiry.max(Duration::from_millis(1)))
        .message_expiry_interval(cfg.session_expiry.max(Duration::from_secs(1)))
        // A restarted Roost binds its port again at once, even while connections of the
        // previous run (boards reconnecting) linger in TIME_WAIT.
        .reuseaddr(Some(true));
    let listener = configure(builder).bind().map_err(|e| bind_error(addr, setting, e))?;
    let local = listener.local_addr().map_err(|e| bind_error(addr, setting, e))?;
    Ok((listener, local))
}

/// rmqtt's error binding `addr` (the listener `setting` names), as an I/O error where it is one.
fn bind_error(addr: SocketAddr, setting: &'static str, e: rmqtt::Error) -> MqttError {
    let source = match e.downcast::<std::io::Error>() {
        Ok(io) => io,
        Err(other) => std::io::Error::other(other.to_string()),
    };
    MqttError::Bind { addr, setting, source }
}

/// The TLS settings of the TLS listener: its certificate, and client certificates when a CA
/// for them is configured (then the certificate's common name is the username the hooks see).
fn tls_builder(b: Builder, tls: &TlsListenerConfig) -> Builder {
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    let b = b.tls_cert(Some(path(&tls.cert))).tls_key(Some(path(&tls.key)));
    match &tls.client_ca {
        None => b,
        Some(ca) => b
            .tls_cross_certificate(true)
            .tls_client_ca_certs(Some(path(ca)))
            .collect_cert_info(true)
            .cert_cn_as_username(true),
    }
}
