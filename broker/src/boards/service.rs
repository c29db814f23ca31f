//! The [`BoardService`] itself: its state (the registry, live connections, requests in flight,
//! per-board queues), loading and saving the registry, the registry views the API shows, and the
//! bookkeeping the operations in `ops` use. What the broker hands it is in `inbound`; one
//! request's life is a `Call` (`call`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roost_core::board::{Reply, RequestState};
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::counters::BoardCounters;
use super::publisher::CmdPublisher;
use super::registry::{BoardEntry, HistoryItem, ListedState, RegistryFile, REGISTRY_FILE};
use super::settings::BoardSettings;

/// A request in flight, as `GET /api/v1/boards/requests` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InflightView {
    pub request_id: String,
    pub board: String,
    pub op: String,
    pub state: RequestState,
    pub started_ms: u64,
}

pub(super) struct Inflight {
    pub view: InflightView,
    pub replies: mpsc::Sender<Reply>,
    pub gone: Arc<Gone>,
}

/// Set when a board goes offline: every request in flight to it fails with `reason`.
#[derive(Default)]
pub(crate) struct Gone {
    pub token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Gone {
    pub(super) fn fire(&self, reason: &str) {
        *lock(&self.reason) = Some(reason.to_owned());
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> String {
        lock(&self.reason).clone().unwrap_or_else(|| "board went offline".into())
    }
}

#[derive(Default)]
pub(super) struct Inner {
    pub reg: RegistryFile,
    /// Live connection key -> board name.
    pub conns: HashMap<String, String>,
    /// Board name -> the connection its last status came on.
    pub board_conn: HashMap<String, String>,
    /// Request id -> request in flight.
    pub inflight: HashMap<String, Inflight>,
    /// Board -> one gone-signal shared by its requests in flight (replaced when it fires).
    pub gone: HashMap<String, Arc<Gone>>,
    pub permits: HashMap<String, Arc<Semaphore>>,
    /// (board, path, file sha256) -> the offset the board last acknowledged.
    pub resume: HashMap<(String, String, String), u64>,
}

/// The board command service. Cheap to share (`Arc`).
pub struct BoardService {
    pub settings: BoardSettings,
    /// The broker's largest payload, in bytes.
    pub max_payload: usize,
    path: PathBuf,
    inner: Mutex<Inner>,
    pub(super) publisher: OnceLock<Arc<dyn CmdPublisher>>,
    save: Arc<tokio::sync::Notify>,
    pub counters: BoardCounters,
    pub(super) id_prefix: String,
    pub(super) next_id: AtomicU64,
    /// The runtime board operations run on (the API's handlers run on their own threads).
    runtime: tokio::runtime::Handle,
}

impl BoardService {
    /// Loads the registry from `data_dir` and starts the task that saves it.
    pub fn start(
        settings: BoardSettings,
        data_dir: &Path,
        max_payload: usize,
    ) -> anyhow::Result<Arc<BoardService>> {
        let path = data_dir.join(REGISTRY_FILE);
        let reg = RegistryFile::load(&path)?;
        info!(boards = reg.boards.len(), pending = reg.pending.len(), "board registry loaded");
        let svc = Arc::new(BoardService {
            settings,
            max_payload,
            path,
            inner: Mutex::new(Inner { reg, ..Inner::default() }),
            publisher: OnceLock::new(),
            save: Arc::new(tokio::sync::Notify::new()),
            counters: BoardCounters::default(),
            id_prefix: hex::encode(rand::random::<[u8; 4]>()),
            next_id: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
        });
        let weak = Arc::downgrade(&svc);
        let save = svc.save.clone();
        tokio::spawn(async move {
            loop {
                save.notified().await;
                // Coalesce bursts of changes into one write.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(svc) = weak.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || svc.flush()).await;
            }
        });
        Ok(svc)
    }

    /// Gives the service its way to publish commands (once the broker runs).
    pub fn set_publisher(&self, publisher: Arc<dyn CmdPublisher>) {
        let _ = self.publisher.set(publisher);
    }

    /// Writes the registry now.
    pub fn flush(&self) {
        let snapshot = self.lock().reg.clone();
        if let Err(e) = snapshot.save(&self.path) {
            warn!(path = %self.path.display(), error = %e, "cannot save the board registry");
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(super) fn save_soon(&self) {
        self.save.notify_one();
    }

    // -----------------------------------------------------------------------------------------
    // Registry views

    /// Approved boards, by name.
    pub fn list(&self) -> Vec<BoardEntry> {
        self.lock().reg.boards.values().cloned().collect()
    }

    /// How many approved boards are in each state (every state, zeros included), and how many
    /// wait for approval.
    pub fn state_counts(&self) -> (Vec<(ListedState, usize)>, usize) {
        let inner = self.lock();
        let states = [
            ListedState::Idle,
            ListedState::Busy,
            ListedState::Offline,
            ListedState::Unsupported,
            ListedState::BadStatus,
        ];
        let counts = states
            .map(|state| (state, inner.reg.boards.values().filter(|b| b.state == state).count()))
            .to_vec();
        (counts, inner.reg.pending.len())
    }

    /// Boards that connected but are not approved yet.
    pub fn scan(&self) -> Vec<BoardEntry> {
        self.lock().reg.pending.values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<BoardEntry> {
        self.lock().reg.boards.get(name).cloned()
    }

    /// Requests in flight.
    pub fn requests(&self) -> Vec<InflightView> {
        let mut v: Vec<_> = self.lock().inflight.values().map(|f| f.view.clone()).collect();
        v.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        v
    }

    /// Approves pending boards; returns, per name, whether it was pending.
    pub fn approve(&self, names: &[String]) -> Vec<(String, bool)> {
        let mut inner = self.lock();
        let out = names
            .iter()
            .map(|n| match inner.reg.pending.remove(n) {
                Some(mut entry) => {
                    if !inner.board_conn.contains_key(n) {
                        entry.state = ListedState::Offline;
                    }
                    inner.reg.boards.insert(n.clone(), entry);
                    info!(board = %n, "board approved");
                    (n.clone(), true)
                }
                None => (n.clone(), false),
            })
            .collect();
        drop(inner);
        self.save_soon();
        out
    }

    /// Names of approved boards that match a hostlist pattern's expansion, and those that do not
    /// exist.
    pub fn known(&self, names: &[String]) -> (Vec<String>, Vec<String>) {
        let inner = self.lock();
        names.iter().cloned().partition(|n| inner.reg.boards.contains_key(n))
    }

    // -----------------------------------------------------------------------------------------
    // Requests

    /// Waits for a place in `board`'s queue.
    pub(crate) async fn permit(&self, board: &str) -> OwnedSemaphorePermit {
        let sem = {
            let mut inner = self.lock();
            let n = self.settings.max_concurrent_per_board;
            inner.permits.entry(board.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(n))).clone()
        };
        sem.acquire_owned().await.expect("board semaphores are never closed")
    }

    pub(super) fn set_state(&self, id: &str, state: RequestState) {
        if let Some(f) = self.lock().inflight.get_mut(id) {
            f.view.state = state;
        }
    }

    /// Adds a finished request to its board's history.
    pub(crate) fn remember(&self, item: HistoryItem) {
        let keep = self.settings.history_len;
        if let Some(entry) = self.lock().reg.boards.get_mut(&item.board) {
            entry.remember(item, keep);
        }
        self.save_soon();
    }

    pub(crate) fn resume_offset(&self, key: &(String, String, String)) -> Option<u64> {
        self.lock().resume.get(key).copied()
    }

    pub(crate) fn set_resume(&self, key: (String, String, String), offset: Option<u64>) {
        let mut inner = self.lock();
        match offset {
            Some(o) => inner.resume.insert(key, o),
            None => inner.resume.remove(&key),
        };
    }

    /// Moves `old`'s registry entry (its history too) to `new`, after the board agreed.
    pub(crate) fn move_entry(&self, old: &str, new: &str) {
        let mut inner = self.lock();
        if let Some(mut entry) = inner.reg.boards.remove(old) {
            entry.name = new.to_owned();
            entry.renamed_from.push(old.to_owned());
            // The board may already be back under its new name (its status can overtake the
            // rename's reply here): keep what it said then, and the history from before.
            let live = inner.reg.boards.remove(new).or_else(|| inner.reg.pending.remove(new));
            match live {
                Some(live) => {
                    entry.state = live.state;
                    entry.state_detail = live.state_detail;
                    entry.last_seen_ms = live.last_seen_ms;
                    entry.free_memory = live.free_memory;
                }
                None => entry.state = ListedState::Offline,
            }
            inner.reg.boards.insert(new.to_owned(), entry);
        }
        inner.board_conn.remove(old);
        inner.permits.remove(old);
        inner.resume.retain(|(b, _, _), _| b != old);
        drop(inner);
        info!(old, new, "board renamed");
        self.save_soon();
    }

    /// Whether `name` is taken (approved or pending).
    pub(crate) fn name_taken(&self, name: &str) -> bool {
        let inner = self.lock();
        inner.reg.boards.contains_key(name) || inner.reg.pending.contains_key(name)
    }

    /// The runtime board operations run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

/// Fails everything in flight to `board` and marks it offline.
pub(super) fn mark_offline(inner: &mut Inner, board: &str, reason: &str) {
    if let Some(entry) = inner.reg.boards.get_mut(board) {
        entry.state = ListedState::Offline;
        entry.state_detail = None;
    }
    if let Some(entry) = inner.reg.pending.get_mut(board) {
        entry.state = ListedState::Offline;
    }
    inner.conns.retain(|_, b| b != board);
    fire_gone(inner, board, reason);
}

pub(super) fn fire_gone(inner: &mut Inner, board: &str, reason: &str) {
    if let Some(gone) = inner.gone.remove(board) {
        if inner.inflight.values().any(|f| Arc::ptr_eq(&f.gone, &gone)) {
            info!(board, reason, "failing the board's requests in flight");
        }
        gone.fire(reason);
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
