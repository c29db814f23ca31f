//! Devices and their credentials: `roost device add|list|show|rotate|revoke` ([`cli`]), the same
//! under `/api/v1/devices` ([`api`]), kept in `<data_dir>/devices.db` (SQLite). A secret is
//! shown once, when it is made, and stored only as an argon2id hash ([`secret`]). The broker's
//! authenticate hook asks [`Devices::authenticate`]; the rules of who may connect as whom and
//! publish where are in [`rules`]. Revoking or rotating a device disconnects its sessions at once.

pub mod api;
pub mod cli;
pub mod limits;
pub mod rules;
mod secret;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use roost_core::board::validate_board_name;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("device store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("device store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("invalid device name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("device {0:?} exists; `roost device rotate {0}` gives it a new secret")]
    Exists(String),
    #[error("no device named {0:?} (`roost device list` shows them)")]
    NotFound(String),
}

/// A device as `list` and `show` give it (never its secret or hash).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DeviceInfo {
    pub name: String,
    pub created_ms: i64,
    pub rotated_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// Disconnects a device's sessions: the broker's part, set once it runs.
pub trait Disconnect: Send + Sync {
    fn disconnect(&self, device: &str);
}

/// A registered device's hash, and the fingerprint of the last secret that verified.
struct Cached {
    hash: String,
    verified: Option<[u8; 32]>,
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub accepted: AtomicU64,
    pub bad_credentials: AtomicU64,
    pub not_authorized: AtomicU64,
    pub publishes_denied: AtomicU64,
    pub subscribes_denied: AtomicU64,
    /// Connections closed for a packet over `mqtt.max_packet_size`.
    pub packets_too_large: AtomicU64,
}

/// The device store and the credentials check.
pub struct Devices {
    db: Mutex<Connection>,
    /// Every device that is not revoked.
    active: RwLock<HashMap<String, Cached>>,
    /// Salt of the in-memory fingerprints, new each start.
    salt: [u8; 16],
    disconnect: OnceLock<Arc<dyn Disconnect>>,
    /// Secret checks running at once: one per core, so a flood of connects with wrong secrets
    /// waits here instead of taking every blocking thread (and its argon2 memory).
    verifying: tokio::sync::Semaphore,
    pub counters: AuthCounters,
    /// What was refused, by device: publishes, subscriptions and wills outside its topics,
    /// messages over its rate, connections over its limit.
    pub refusals: limits::Refusals,
}

fn now_ms() -> i64 {
    roost_core::envelope::now_ns() / 1_000_000
}

impl Devices {
    pub fn open(data_dir: &Path) -> Result<Arc<Devices>, DeviceError> {
        let path = data_dir.join("devices.db");
        let open_err = |source| DeviceError::Open { path: path.display().to_string(), source };
        let db = Connection::open(&path).map_err(open_err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS devices (
                 name TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, created_ms INTEGER NOT NULL,
                 rotated_ms INTEGER, revoked_ms INTEGER)",
        )
        .map_err(open_err)?;
        let mut active = HashMap::new();
        {
            let mut stmt = db.prepare("SELECT name, secret_hash FROM devices WHERE revoked_ms IS NULL")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (name, hash) = row?;
                active.insert(name, Cached { hash, verified: None });
            }
        }
        Ok(Arc::new(Devices {
            db: Mutex::new(db),
            active: RwLock::new(active),
            salt: rand::random(),
            disconnect: OnceLock::new(),
            verifying: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            counters: AuthCounters::default(),
            refusals: limits::Refusals::default(),
        }))
    }

    /// Wires the broker's way of disconnecting a device's sessions.
    pub fn set_disconnect(&self, d: Arc<dyn Disconnect>) {
        let _ = self.disconnect.set(d);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Cached>> {
        self.active.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `name` is a device with credentials (registered and not revoked).
    pub fn is_registered(&self, name: &str) -> bool {
        self.active.read().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }

    /// Registers a device; returns its secret, which is not kept and cannot be shown again.
    /// A revoked device's name may be added again.
    pub fn add(&self, name: &str) -> Result<String, DeviceError> {
        validate_board_name(name)
            .map_err(|e| DeviceError::InvalidName { name: name.into(), reason: e.to_string() })?;
        let secret = secret::generate();
        let hash = secret::hash(&secret);
        let changed = self.lock().execute(
            "INSERT INTO devices (name, secret_hash, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET secret_hash = ?2, created_ms = ?3, rotated_ms = NULL,
                 revoked_ms = NULL WHERE revoked_ms IS NOT NULL",
            params![name, hash, now_ms()],
        )?;
        if changed == 0 {
            return Err(DeviceError::Exists(name.into()));
        }
        self.active().insert(name.into(), Cached { hash, verified: None });
        Ok(secret)
    }

    /// Gives a device a new secret and disconnects it (the old secret stops working).
    pub fn rotate(&self, name: &str) -> Result<String, DeviceError> {
        let secret = secret::generate();
        let hash = secret::hash(&secret);
        let changed = self.lock().execute(
            "UPDATE devices SET secret_hash = ?2, rotated_ms = ?3 WHERE name = ?1 AND revoked_ms IS NULL",
            params![name, hash, now_ms()],
        )?;
        if changed == 0 {
            return Err(DeviceError::NotFound(name.into()));
        }
        self.active().insert(name.into(), Cached { hash, verified: None });
        self.kick(name);
        Ok(secret)
    }

    /// Revokes a device: its credentials stop working and its sessions are disconnected.
    pub fn revoke(&self, name: &str) -> Result<(), DeviceError> {
        let changed = self.lock().execute(
            "UPDATE devices SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
            params![name, now_ms()],
        )?;
        if changed == 0 {
            return Err(DeviceError::NotFound(name.into()));
        }
        self.active().remove(name);
        self.kick(name);
        Ok(())
    }

    fn kick(&self, name: &str) {
        if let Some(d) = self.disconnect.get() {
            d.disconnect(name);
        }
    }

    pub fn list(&self) -> Result<Vec<DeviceInfo>, DeviceError> {
        let db = self.lock();
        let mut stmt =
            db.prepare("SELECT name, created_ms, rotated_ms, revoked_ms FROM devices ORDER BY name")?;
        let rows = stmt.query_map([], info)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get(&self, name: &str) -> Result<DeviceInfo, DeviceError> {
        self.lock()
            .query_row(
                "SELECT name, created_ms, rotated_ms, revoked_ms FROM devices WHERE name = ?1",
                [name],
                info,
            )
            .optional()?
            .ok_or_else(|| DeviceError::NotFound(name.into()))
    }

    /// Whether `secret` is device `name`'s. The first good secret after a start or a rotation
    /// costs an argon2id verification (off the async threads); later ones a hash lookup.
    pub async fn authenticate(&self, name: &str, secret: &[u8]) -> bool {
        let Ok(secret) = std::str::from_utf8(secret) else { return false };
        let fingerprint = secret::fingerprint(secret, &self.salt);
        let hash = {
            let active = self.active.read().unwrap_or_else(|p| p.into_inner());
            match active.get(name) {
                None => return false,
                Some(c) if c.verified == Some(fingerprint) => return true,
                Some(c) => c.hash.clone(),
            }
        };
        let (s, h) = (secret.to_owned(), hash.clone());
        let Ok(_slot) = self.verifying.acquire().await else { return false };
        let ok = tokio::task::spawn_blocking(move || secret::verify(&s, &h)).await.unwrap_or(false);
        if ok {
            // Only if the hash is still the one verified against (not rotated meanwhile).
            if let Some(c) = self.active().get_mut(name).filter(|c| c.hash == hash) {
                c.verified = Some(fingerprint);
            }
        }
        ok
    }
}

fn info(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceInfo> {
    Ok(DeviceInfo { name: r.get(0)?, created_ms: r.get(1)?, rotated_ms: r.get(2)?, revoked_ms: r.get(3)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Kicks(Mutex<Vec<String>>);

    impl Disconnect for Kicks {
        fn disconnect(&self, device: &str) {
            self.0.lock().unwrap().push(device.into());
        }
    }

    #[tokio::test]
    async fn add_rotate_revoke_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let devices = Devices::open(dir.path()).unwrap();
        let kicks = Arc::new(Kicks(Mutex::new(Vec::new())));
        devices.set_disconnect(kicks.clone());
        let secret = devices.add("sensor-1").unwrap();
        assert!(matches!(devices.add("sensor-1"), Err(DeviceError::Exists(_))));
        assert!(matches!(devices.add("bad name"), Err(DeviceError::InvalidName { .. })));
        assert!(devices.authenticate("sensor-1", secret.as_bytes()).await);
        assert!(devices.authenticate("sensor-1", secret.as_bytes()).await, "cached");
        assert!(!devices.authenticate("sensor-1", b"wrong").await);
        assert!(!devices.authenticate("sensor-2", secret.as_bytes()).await);

        let new = devices.rotate("sensor-1").unwrap();
        assert!(!devices.authenticate("sensor-1", secret.as_bytes()).await, "the old secret stops working");
        assert!(devices.authenticate("sensor-1", new.as_bytes()).await);
        drop(devices);

        // Kept across a restart; only the hash is stored.
        let devices = Devices::open(dir.path()).unwrap();
        devices.set_disconnect(kicks.clone());
        assert!(devices.authenticate("sensor-1", new.as_bytes()).await);
        let stored: String =
            devices.lock().query_row("SELECT secret_hash FROM devices", [], |r| r.get(0)).unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains(&new));
        devices.revoke("sensor-1").unwrap();
        assert!(!devices.is_registered("sensor-1"));
        assert!(!devices.authenticate("sensor-1", new.as_bytes()).await);
        assert!(devices.get("sensor-1").unwrap().revoked_ms.is_some());
        assert!(matches!(devices.revoke("sensor-1"), Err(DeviceError::NotFound(_))));
        assert_eq!(*kicks.0.lock().unwrap(), ["sensor-1", "sensor-1"], "rotate and revoke disconnect");
        // A revoked name can be added again, with a new secret.
        let again = devices.add("sensor-1").unwrap();
        assert!(devices.authenticate("sensor-1", again.as_bytes()).await);
        assert_eq!(devices.list().unwrap().len(), 1);
    }
}
