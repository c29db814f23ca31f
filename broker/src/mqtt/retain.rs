//! Retained messages: rmqtt's in-memory topic tree, with Roost's limits (`[mqtt.retain]`), kept
//! across restarts in `<data_dir>/mqtt/retained`.
//!
//! The file is a snapshot of every retained message, written whole (atomically) at most once a
//! second after a change, and at a stop; a crash loses at most the last second of changes. A file
//! Roost cannot read is moved aside (`retained.unreadable`) and Roost starts with none.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use super::state_file::{self, unix_ms, Versioned, VERSION};
use crate::config::MqttRetainSettings;
use crate::ratelimit::RateLimit;
use crate::stats::Stats;

const FILE: &str = "retained";
/// Changes are saved at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    messages: Vec<Saved>,
}

impl Versioned for Snapshot {
    fn version(&self) -> u32 {
        self.version
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    topic: String,
    retain: Retain,
    /// Unix milliseconds; none: never expires.
    expires_at: Option<u64>,
}

/// The payload size of each retained topic, and their sum.
#[derive(Default)]
struct Index {
    sizes: HashMap<String, u64>,
    bytes: u64,
}

impl Index {
    fn put(&mut self, topic: String, size: u64) {
        let old = self.sizes.insert(topic, size).unwrap_or(0);
        self.bytes = self.bytes - old + size;
    }

    fn remove(&mut self, topic: &str) {
        self.bytes -= self.sizes.remove(topic).unwrap_or(0);
    }
}

/// The retained-message store rmqtt calls.
#[derive(Clone)]
pub struct RetainStore(Arc<Inner>);

struct Inner {
    tree: DefaultRetainStorage,
    /// What the limits count; its lock also serialises changes.
    index: Mutex<Index>,
    limits: MqttRetainSettings,
    stats: Arc<Stats>,
    path: PathBuf,
    dirty: AtomicBool,
    changed: Notify,
    refusal_log: RateLimit,
}

impl RetainStore {
    /// Opens the store in `dir`, loading what the last run saved, and starts saving changes.
    pub async fn open(dir: &Path, limits: MqttRetainSettings, stats: Arc<Stats>) -> RetainStore {
        let store = RetainStore(Arc::new(Inner {
            tree: DefaultRetainStorage::new(),
            index: Mutex::new(Index::default()),
            limits,
            stats,
            path: dir.join(FILE),
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
            refusal_log: RateLimit::new(10, Duration::from_secs(10)),
        }));
        store.load().await;
        let saver = store.clone();
        tokio::spawn(async move {
            loop {
                saver.0.changed.notified().await;
                tokio::time::sleep(SAVE_EVERY).await;
                saver.save().await;
            }
        });
        store
    }

    async fn load(&self) {
        let Some(snapshot) = state_file::read::<Snapshot>(&self.0.path, "retained messages") else { return };
        let now = unix_ms();
        let mut index = self.0.index.lock().await;
        for saved in snapshot.messages {
            let remaining = match saved.expires_at {
                Some(at) if at <= now => continue,
                Some(at) => Some(Duration::from_millis(at - now)),
                None => None,
            };
            let size = saved.retain.publish.payload.len() as u64;
            let topic = TopicName::from(saved.topic.as_str());
            if let Err(e) = self.0.tree.set_with_timeout(&topic, saved.retain, remaining).await {
                warn!(topic = %saved.topic, error = %e, "a saved retained message has a bad topic; skipped");
                continue;
            }
            index.put(saved.topic, size);
        }
        self.count(&index);
        info!(messages = index.sizes.len(), "retained messages loaded");
    }

    fn count(&self, index: &Index) {
        self.0.stats.retained_messages.store(index.sizes.len() as u64, Relaxed);
        self.0.stats.retained_bytes.store(index.bytes, Relaxed);
    }

    /// Writes every retained message to the file now, if anything changed since the last save.
    pub async fn save(&self) {
        if !self.0.dirty.swap(false, Relaxed) {
            return;
        }
        let snapshot = {
            // Expired messages are dropped from the tree and the counts before each save.
            let mut index = self.0.index.lock().await;
            self.0.tree.remove_expired_messages().await;
            let now = unix_ms();
            let (all, _) = match self.0.tree.get_all_paginated(0, usize::MAX).await {
                Ok(all) => all,
                Err(e) => return warn!(error = %e, "cannot list retained messages to save them"),
            };
            let live: HashSet<&str> = all.iter().map(|(t, _, _)| &**t).collect();
            index.sizes.retain(|topic, _| live.contains(topic.as_str()));
            index.bytes = index.sizes.values().sum();
            self.count(&index);
            let messages = all
                .into_iter()
                .map(|(topic, retain, remaining)| Saved {
                    topic: topic.to_string(),
                    retain,
                    expires_at: remaining.map(|r| now + r.as_millis() as u64),
                })
                .collect();
            Snapshot { version: VERSION, messages }
        };
        if let Err(e) = state_file::write(self.0.path.clone(), snapshot).await {
            self.0.dirty.store(true, Relaxed);
            warn!(path = %self.0.path.display(), error = %e, "cannot save retained messages; will retry");
            self.0.changed.notify_one();
        }
    }

    fn changed(&self) {
        self.0.dirty.store(true, Relaxed);
        self.0.changed.notify_one();
    }
}

/// A retained message's expiry: its own (MQTT 5 message expiry interval) or none. rmqtt passes
/// the listener's default message expiry, which is for queued messages, not retained ones.
fn own_expiry(retain: &Retain) -> Option<Duration> {
    let props = retain.publish.properties.as_ref()?;
    props.message_expiry_interval.map(|secs| Duration::from_secs(u64::from(secs.get())))
}

#[async_trait]
impl RetainStorage for RetainStore {
    fn enable(&self) -> bool {
        true
    }

    async fn set(&self, topic: &TopicName, retain: Retain, _expiry: Option<Duration>) -> rmqtt::Result<()> {
        let size = retain.publish.payload.len() as u64;
        let expiry = own_expiry(&retain);
        let mut index = self.0.index.lock().await;
        let old = index.sizes.get(&**topic).copied();
        if size > 0 {
            let limits = &self.0.limits;
            let total = index.bytes - old.unwrap_or(0) + size;
            let over = if old.is_none() && index.sizes.len() >= limits.max_messages {
                Some("mqtt.retain.max_messages")
            } else if total > limits.max_bytes {
                Some("mqtt.retain.max_bytes")
            } else {
                None
            };
            if let Some(setting) = over {
                self.0.stats.retained_refused.fetch_add(1, Relaxed);
                if let Some(held_back) = self.0.refusal_log.check() {
                    warn!(topic = %topic, setting, held_back, "retained message over the limit; delivered but not retained");
                }
                return Ok(());
            }
        } else if old.is_none() {
            return Ok(());
        }
        self.0.tree.set_with_timeout(topic, retain, expiry).await?;
        if size > 0 {
            index.put(topic.to_string(), size);
        } else {
            index.remove(topic);
        }
        self.count(&index);
        drop(index);
        self.changed();
        Ok(())
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.tree.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.0.stats.retained_messages.load(Relaxed) as isize
    }

    async fn max(&self) -> isize {
        self.0.limits.max_messages as isize
    }
}
