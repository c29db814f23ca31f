//! Persistent sessions across a restart: at a stop, every session that outlives its connection
//! (MQTT 3.1.1 clean session off, MQTT 5 a session expiry) is taken from rmqtt with its
//! subscriptions, the messages queued for it and those in flight, and written to
//! `<data_dir>/mqtt/sessions`; at the next start, before the listeners open, each is rebuilt as an
//! offline session (its subscriptions routed again) that the client resumes when it reconnects.
//!
//! Between stops, [`checkpoint`] writes the same file every `mqtt.sessions.checkpoint_secs`
//! (when a session came, went or changed its subscriptions) without the messages: after a crash
//! the sessions come back with their subscriptions, and only what was queued for them is lost
//! (the messages sinks stored are not concerned; this is what subscribers were to be sent). A
//! session's expiry keeps counting while Roost is down.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::inflight::OutInflightMessage;
use rmqtt::session::{Session, SessionState};
use rmqtt::types::{
    ConnectInfo, DisconnectInfo, From as MsgFrom, Id, OfflineSession, Publish, SessionSubMap, SessionSubs,
    Subscriptions,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::state_file::{self, unix_ms, Versioned, VERSION};

const FILE: &str = "sessions";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    sessions: Vec<Saved>,
}

impl Versioned for Snapshot {
    fn version(&self) -> u32 {
        self.version
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    id: Id,
    /// The CONNECT, without its password.
    conn_info: ConnectInfo,
    created_at: i64,
    disconnect: DisconnectInfo,
    /// Unix milliseconds.
    expires_at: u64,
    subscriptions: Subscriptions,
    queued: Vec<(MsgFrom, Publish)>,
    inflight: Vec<OutInflightMessage>,
}

/// What [`save`] did.
#[derive(Debug, Default)]
pub struct SaveReport {
    pub sessions: usize,
    pub messages: usize,
}

/// The CONNECT without the password (the file must not hold device secrets).
fn without_password(info: &ConnectInfo) -> ConnectInfo {
    let mut info = info.clone();
    match &mut info {
        ConnectInfo::V3(_, c) => c.password = None,
        ConnectInfo::V5(_, c) => c.password = None,
    }
    info
}

/// Disconnects every session (the broker is stopping) and writes those that outlive their
/// connection to `dir`.
pub async fn save(scx: &ServerContext, dir: &Path) -> std::io::Result<SaveReport> {
    let ids: Vec<Id> = scx.extends.shared().await.iter().map(|e| e.id()).collect();
    let now = unix_ms();
    let taken = ids.into_iter().map(|id| async move {
        let entry = scx.extends.shared().await.entry(id.clone());
        let session = entry.session()?;
        let kept = keeps(scx, &session, now).await;
        let mut locked = entry.try_lock().await.ok()?;
        let offline = locked.kick(kept.is_none(), kept.is_none(), true).await.ok()?;
        drop(entry);
        let kept = kept?;
        let OfflineSession::Exist(Some(info)) = offline else { return None };
        Some(Saved {
            id: info.id,
            conn_info: kept.conn_info,
            created_at: info.created_at,
            disconnect: kept.disconnect,
            expires_at: kept.expires_at,
            subscriptions: info.subscriptions,
            queued: info.offline_messages.into_iter().collect(),
            inflight: info.inflight_messages,
        })
    });
    let sessions: Vec<Saved> = futures::future::join_all(taken).await.into_iter().flatten().collect();
    let saved = SaveReport {
        sessions: sessions.len(),
        messages: sessions.iter().map(|s| s.queued.len() + s.inflight.len()).sum(),
    };
    write(dir, sessions).await?;
    Ok(saved)
}

async fn write(dir: &Path, sessions: Vec<Saved>) -> std::io::Result<()> {
    state_file::write(dir.join(FILE), Snapshot { version: VERSION, sessions }).await
}

/// Writes the kept sessions to `dir` as they are now, without their messages and without
/// disturbing them, unless they are as at the last checkpoint (`last`, a digest of who they are,
/// whether connected, and their subscriptions). The number written, if it wrote.
pub async fn checkpoint(scx: &ServerContext, dir: &Path, last: &mut u64) -> std::io::Result<Option<usize>> {
    use std::hash::{Hash, Hasher};
    let now = unix_ms();
    let sessions: Vec<Session> = scx.extends.shared().await.iter().filter_map(|e| e.session()).collect();
    let mut saved = Vec::new();
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for session in sessions {
        let Some(kept) = keeps(scx, &session, now).await else { continue };
        let Ok(subs) = session.subscriptions().await else { continue };
        let mut subscriptions: Subscriptions =
            subs.read().await.iter().map(|(f, o)| (f.clone(), o.clone())).collect();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        let state =
            (&*session.id.client_id, kept.connected, if kept.connected { 0 } else { kept.expires_at });
        state.hash(&mut digest);
        rmp_serde::to_vec(&subscriptions).unwrap_or_default().hash(&mut digest);
        let created_at = session.created_at().await.unwrap_or_default();
        saved.push(Saved {
            id: session.id.clone(),
            conn_info: kept.conn_info,
            created_at,
            disconnect: kept.disconnect,
            expires_at: kept.expires_at,
            subscriptions,
            queued: Vec::new(),
            inflight: Vec::new(),
        });
    }
    let digest = digest.finish();
    if digest == *last {
        return Ok(None);
    }
    let n = saved.len();
    write(dir, saved).await?;
    *last = digest;
    Ok(Some(n))
}

/// What is saved of a session that outlives its connection.
struct Kept {
    /// Its CONNECT, without the password.
    conn_info: ConnectInfo,
    /// How it ended (now, if it is connected).
    disconnect: DisconnectInfo,
    /// Unix milliseconds.
    expires_at: u64,
    connected: bool,
}

/// Whether `session` outlives its connection, and if so what is saved of it.
async fn keeps(scx: &ServerContext, session: &Session, now: u64) -> Option<Kept> {
    let conn_info = session.connect_info().await.ok()?;
    if let ConnectInfo::V3(_, c) = conn_info.as_ref() {
        if c.clean_session {
            return None;
        }
    }
    let connected = session.connected().await.unwrap_or(false);
    let disconnect = session.disconnect().await.ok().flatten();
    let fitter = scx.extends.fitter_mgr().await.create(
        conn_info.clone(),
        session.id.clone(),
        session.listen_cfg().clone(),
    );
    let expiry = fitter.session_expiry_interval(disconnect.as_ref()).as_millis() as u64;
    let since = if connected { now } else { session.disconnected_at().await.ok()?.max(0) as u64 };
    let expires_at = since.saturating_add(expiry);
    if expiry == 0 || expires_at <= now {
        return None;
    }
    let mut info = DisconnectInfo::new(since as i64);
    info.mqtt_disconnect = disconnect;
    Some(Kept { conn_info: without_password(&conn_info), disconnect: info, expires_at, connected })
}

/// Rebuilds the sessions the last stop (or checkpoint) saved in `dir`, as offline sessions; the
/// file is then removed (the next checkpoint or stop writes the sessions as they are then). Call
/// before the listeners open.
pub async fn restore(scx: &ServerContext, dir: &Path) -> usize {
    let path = dir.join(FILE);
    let Some(snapshot) = state_file::read::<Snapshot>(&path, "saved sessions") else { return 0 };
    let now = unix_ms();
    let mut restored = 0;
    for saved in snapshot.sessions {
        if saved.expires_at <= now {
            continue;
        }
        let client_id = saved.id.client_id.clone();
        let remaining = Duration::from_millis(saved.expires_at - now);
        match rebuild(scx, saved, remaining).await {
            Ok(()) => restored += 1,
            Err(e) => warn!(%client_id, error = %e, "a saved session could not be restored"),
        }
    }
    if let Err(e) = std::fs::remove_file(&path) {
        warn!(path = %path.display(), error = %e, "cannot remove the saved sessions after restoring them");
    }
    info!(sessions = restored, "persistent sessions restored");
    restored
}

async fn rebuild(scx: &ServerContext, saved: Saved, remaining: Duration) -> rmqtt::Result<()> {
    let id = saved.id;
    let listen_cfg = scx
        .listen_cfgs
        .get(&id.lid)
        .map(|c| c.value().clone())
        .ok_or_else(|| anyhow::anyhow!("its listener ({}) is not configured any more", id.lid))?;
    let conn_info = Arc::new(saved.conn_info);
    let fitter = scx.extends.fitter_mgr().await.create(conn_info.clone(), id.clone(), listen_cfg.clone());
    for (filter, opts) in &saved.subscriptions {
        scx.extends.router().await.add(filter, id.clone(), opts.clone()).await?;
    }
    let subs: SessionSubMap = saved.subscriptions.into_iter().collect();
    let session = Session::new(
        id.clone(),
        scx.clone(),
        fitter.max_mqueue_len(),
        listen_cfg,
        fitter.clone(),
        None,
        fitter.max_inflight(),
        saved.created_at,
        conn_info,
        false,
        false,
        false,
        saved.created_at,
        SessionSubs::from(subs),
        Some(saved.disconnect),
        None,
    )
    .await?;
    for item in saved.queued {
        if session.deliver_queue().push(item).is_err() {
            warn!(client_id = %id.client_id, "a saved session has more queued messages than mqtt.sessions.max_queued; the rest are dropped");
            break;
        }
    }
    {
        let mut inflight = session.out_inflight().write().await;
        for message in saved.inflight {
            inflight.push_back(message);
        }
    }
    let tx = SessionState::offline_restart(session.clone(), remaining).await?;
    scx.extends.shared().await.entry(id).set(session, tx).await
}
