//! The board command service: Roost's side of the board protocol (`docs/board-protocol.md`).
//!
//! The broker hands it, in-process, every allowed PUBLISH on `roost/boards/{name}/status` and
//! `.../reply` (and a board's last will), and every disconnect; board topics never reach the
//! telemetry pipelines. It keeps the [`registry`] of boards, publishes requests on
//! `roost/boards/{name}/cmd` through a [`CmdPublisher`] the broker provides (in-process, no
//! network client), and tracks every request through queued -> sent -> running -> succeeded |
//! failed | timed out with a deadline. A board that is offline, or goes offline while a request
//! runs, fails that request at once with an error naming it. Each board runs at most
//! `boards.max_concurrent_per_board` requests at a time (the others wait, queued); boards run in
//! parallel.
//!
//! - [`acl`]: who may publish and subscribe under `roost/boards/` (pure rules, used by the hooks).
//! - [`registry`]: the board registry and its file.
//! - [`ops`]: execute, upload, fs, rename and reset, each for one board, as the API runs them.
//! - [`install`]: packages (local or from a package index) unpacked into the files for `lib/`.
//! - [`api`]: the `/api/v1/boards/...` endpoints.
//! - [`cli`]: `roost board ...`.
//!
//! Replies are trusted only as far as the protocol allows: a reply must come on the `reply`
//! topic of the board its request was sent to (the broker's ACL already ties that topic to the
//! board's client id) and carry a request id Roost issued and has not finished; anything else is
//! dropped and counted ([`BoardCounters`]).

pub mod acl;
pub mod api;
pub mod cli;
pub mod install;
pub mod ops;
pub mod registry;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use roost_core::board::{BoardState, Channel, Op, Reply, ReplyBody, Request, RequestState, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use registry::{BoardEntry, HistoryItem, ListedState, RegistryFile, REGISTRY_FILE};

/// `[boards]`: the board command service's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoardSettings {
    /// When true, a board that connects for the first time is only listed by `roost board scan`
    /// until an operator approves it; it is sent nothing before. When false (the default), boards
    /// are registered on their first status.
    pub require_approval: bool,
    /// Requests one board runs at a time; the others wait in the queue.
    pub max_concurrent_per_board: usize,
    /// Deadline of fs, rename and reset requests.
    pub request_timeout_secs: u64,
    /// Deadline of each upload chunk (renewed by each acknowledgement).
    pub upload_chunk_timeout_secs: u64,
    /// Time an `execute` gets past its own timeout for the board to report.
    pub exec_grace_secs: u64,
    /// The largest file the admin API accepts for an upload.
    pub max_upload_bytes: u64,
    /// Finished requests remembered per board.
    pub history_len: usize,
    /// Output kept per request and board (stdout and stderr together); the rest is cut.
    pub max_output_bytes: usize,
    /// `install`: the PEP 503 "simple" index package names are resolved from (unset: only local
    /// packages can be installed).
    pub package_index: Option<String>,
    /// `install`: the largest package file (download or local archive).
    pub max_package_bytes: u64,
    /// `install`: the most a package may unpack to.
    pub max_package_unpacked_bytes: u64,
    /// `install`: the most files a package may hold.
    pub max_package_files: usize,
}

impl Default for BoardSettings {
    fn default() -> Self {
        BoardSettings {
            require_approval: false,
            max_concurrent_per_board: 1,
            request_timeout_secs: 30,
            upload_chunk_timeout_secs: 30,
            exec_grace_secs: 5,
            max_upload_bytes: 64 << 20,
            history_len: 50,
            max_output_bytes: 1 << 20,
            package_index: None,
            max_package_bytes: 16 << 20,
            max_package_unpacked_bytes: 16 << 20,
            max_package_files: 1000,
        }
    }
}

impl BoardSettings {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_per_board == 0 {
            return Err("boards.max_concurrent_per_board must be at least 1".into());
        }
        if self.request_timeout_secs == 0 || self.upload_chunk_timeout_secs == 0 {
            return Err("boards.request_timeout_secs and upload_chunk_timeout_secs must be at least 1".into());
        }
        if let Some(index) = &self.package_index {
            if !(index.starts_with("http://") || index.starts_with("https://")) {
                return Err("boards.package_index must be an http:// or https:// URL".into());
            }
        }
        Ok(())
    }

    /// The caps `install` applies.
    pub fn package_limits(&self) -> install::Limits {
        install::Limits {
            max_download_bytes: self.max_package_bytes,
            max_unpacked_bytes: self.max_package_unpacked_bytes,
            max_files: self.max_package_files,
        }
    }
}

/// How the service publishes a request on a board's `cmd` topic: implemented by the broker,
/// in-process (QoS 1, not retained).
#[async_trait]
pub trait CmdPublisher: Send + Sync {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String>;
}

/// Counters of what the service dropped or refused.
#[derive(Debug, Default)]
pub struct BoardCounters {
    /// Replies whose request id belongs to another board.
    pub replies_forged: AtomicU64,
    /// Replies with a request id Roost does not know (or already finished).
    pub replies_unknown: AtomicU64,
    /// Replies that are not valid protocol messages.
    pub replies_malformed: AtomicU64,
    /// Statuses that are not valid protocol messages.
    pub statuses_malformed: AtomicU64,
    /// Client publishes refused under `roost/boards/` (cmd topics, other boards' topics).
    pub publishes_denied: AtomicU64,
    /// Subscriptions refused (other boards' cmd or reply topics).
    pub subscribes_denied: AtomicU64,
    /// Last wills on a topic the client may not publish to, neutralised.
    pub wills_refused: AtomicU64,
    /// Requests published.
    pub requests_sent: AtomicU64,
}

impl BoardCounters {
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            ("replies_forged", self.replies_forged.load(Relaxed)),
            ("replies_unknown", self.replies_unknown.load(Relaxed)),
            ("replies_malformed", self.replies_malformed.load(Relaxed)),
            ("statuses_malformed", self.statuses_malformed.load(Relaxed)),
            ("publishes_denied", self.publishes_denied.load(Relaxed)),
            ("subscribes_denied", self.subscribes_denied.load(Relaxed)),
            ("wills_refused", self.wills_refused.load(Relaxed)),
            ("requests_sent", self.requests_sent.load(Relaxed)),
        ])
    }
}

/// A request in flight, as `GET /api/v1/boards/requests` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InflightView {
    pub request_id: String,
    pub board: String,
    pub op: String,
    pub state: RequestState,
    pub started_ms: u64,
}

struct Inflight {
    view: InflightView,
    replies: mpsc::Sender<Reply>,
    gone: Arc<Gone>,
}

/// Set when a board goes offline: every request in flight to it fails with `reason`.
#[derive(Default)]
struct Gone {
    token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Gone {
    fn fire(&self, reason: &str) {
        *lock(&self.reason) = Some(reason.to_owned());
        self.token.cancel();
    }

    fn reason(&self) -> String {
        lock(&self.reason).clone().unwrap_or_else(|| "board went offline".into())
    }
}

#[derive(Default)]
struct Inner {
    reg: RegistryFile,
    /// Live connection key -> board name.
    conns: HashMap<String, String>,
    /// Board name -> the connection its last status came on.
    board_conn: HashMap<String, String>,
    /// Request id -> request in flight.
    inflight: HashMap<String, Inflight>,
    /// Board -> one gone-signal shared by its requests in flight (replaced when it fires).
    gone: HashMap<String, Arc<Gone>>,
    permits: HashMap<String, Arc<Semaphore>>,
    /// (board, path, file sha256) -> the offset the board last acknowledged.
    resume: HashMap<(String, String, String), u64>,
}

/// The board command service. Cheap to share (`Arc`).
pub struct BoardService {
    pub settings: BoardSettings,
    /// The broker's largest payload, in bytes.
    pub max_payload: usize,
    path: PathBuf,
    inner: Mutex<Inner>,
    publisher: OnceLock<Arc<dyn CmdPublisher>>,
    save: Arc<tokio::sync::Notify>,
    pub counters: BoardCounters,
    id_prefix: String,
    next_id: AtomicU64,
    /// The runtime board operations run on (the API's handlers run on their own threads).
    runtime: tokio::runtime::Handle,
}

/// Why a request stopped waiting for its next reply.
#[derive(Debug)]
pub(crate) enum Stop {
    Offline(String),
    Deadline,
}

/// One request to one board, from being published to its final reply. Dropping it forgets the
/// request: later replies to it are counted as unknown.
pub(crate) struct Call {
    svc: Arc<BoardService>,
    pub id: String,
    pub board: String,
    topic: String,
    replies: mpsc::Receiver<Reply>,
    gone: Arc<Gone>,
    next_seq: u64,
    early: BTreeMap<u64, Reply>,
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn save_soon(&self) {
        self.save.notify_one();
    }

    // -----------------------------------------------------------------------------------------
    // From the broker

    /// A board published on its own `status` (or `reply`) topic: `conn` identifies the
    /// connection (a new one on every connect).
    pub async fn on_publish(&self, conn: &str, board: &str, channel: Channel, payload: &[u8]) {
        match channel {
            Channel::Status => self.on_status(conn, board, payload, false),
            Channel::Reply => self.on_reply(board, payload).await,
            Channel::Cmd => {}
        }
    }

    /// A board's last will, published by the broker when the board vanished.
    pub fn on_will(&self, conn: &str, board: &str, payload: &[u8]) {
        self.on_status(conn, board, payload, true);
    }

    /// A client disconnected.
    pub fn on_disconnect(&self, conn: &str) {
        let mut inner = self.lock();
        let Some(board) = inner.conns.remove(conn) else { return };
        if inner.board_conn.get(&board).map(String::as_str) == Some(conn) {
            inner.board_conn.remove(&board);
            mark_offline(&mut inner, &board, &format!("board '{board}' disconnected"));
        }
    }

    fn on_status(&self, conn: &str, board: &str, payload: &[u8], will: bool) {
        let now = now_ms();
        let mut inner = self.lock();
        if will && inner.board_conn.get(board).is_some_and(|c| c != conn) {
            // The will of a connection the board has already replaced.
            return;
        }
        if payload.is_empty() {
            // A board clearing its retained status (after a rename): nothing to learn.
            return;
        }
        let status = Status::from_json(payload);
        let approved = inner.reg.boards.contains_key(board);
        let known = approved || inner.reg.pending.contains_key(board);
        if !known && matches!(&status, Ok(s) if s.state == BoardState::Offline) {
            // Only a last will says offline first: that of a connection under a name the board
            // no longer has (a rename). It must not bring the old name back.
            debug!(board, "offline status of an unknown board ignored");
            return;
        }
        if !approved && self.settings.require_approval {
            let entry = inner.reg.pending.entry(board.to_owned()).or_insert_with(|| {
                info!(board, "board awaits approval (roost board scan)");
                BoardEntry::new(board, now)
            });
            match &status {
                Ok(s) => {
                    entry.apply_status(s, now);
                }
                Err(e) => bad_status(entry, e, now),
            }
            if entry.state == ListedState::Offline {
                inner.conns.retain(|_, b| b != board);
                inner.board_conn.remove(board);
            } else {
                inner.conns.insert(conn.to_owned(), board.to_owned());
                inner.board_conn.insert(board.to_owned(), conn.to_owned());
            }
            drop(inner);
            self.save_soon();
            return;
        }
        let mut changed = !approved;
        let entry = inner.reg.boards.entry(board.to_owned()).or_insert_with(|| {
            info!(board, "board registered");
            BoardEntry::new(board, now)
        });
        match &status {
            Ok(s) => changed |= entry.apply_status(s, now),
            Err(e) => {
                self.counters.statuses_malformed.fetch_add(1, Relaxed);
                warn!(board, error = %e, "unreadable board status");
                bad_status(entry, e, now);
            }
        }
        let state = entry.state;
        debug!(board, state = state.as_str(), will, "board status");
        match state {
            ListedState::Offline => {
                if inner.board_conn.get(board).is_none_or(|c| c == conn) {
                    inner.board_conn.remove(board);
                }
                mark_offline(&mut inner, board, &format!("board '{board}' went offline"));
            }
            ListedState::Unsupported | ListedState::BadStatus => {
                inner.conns.insert(conn.to_owned(), board.to_owned());
                inner.board_conn.insert(board.to_owned(), conn.to_owned());
                let detail = inner.reg.boards[board].ready().err().unwrap_or_default();
                fire_gone(&mut inner, board, &detail);
            }
            ListedState::Idle | ListedState::Busy => {
                if let Some(old) = inner.board_conn.insert(board.to_owned(), conn.to_owned()) {
                    if old != conn {
                        // A new connection: whatever was in flight on the old one is lost.
                        fire_gone(&mut inner, board, &format!("board '{board}' reconnected"));
                    }
                }
                inner.conns.insert(conn.to_owned(), board.to_owned());
            }
        }
        drop(inner);
        if changed {
            self.save_soon();
        }
    }

    async fn on_reply(&self, board: &str, payload: &[u8]) {
        let reply = match Reply::from_json(payload) {
            Ok(r) => r,
            Err(e) => {
                self.counters.replies_malformed.fetch_add(1, Relaxed);
                warn!(board, error = %e, "malformed board reply dropped");
                return;
            }
        };
        let tx = {
            let inner = self.lock();
            match inner.inflight.get(&reply.id) {
                None => {
                    self.counters.replies_unknown.fetch_add(1, Relaxed);
                    debug!(board, request_id = %reply.id, "reply to an unknown request dropped");
                    return;
                }
                Some(f) if f.view.board != board => {
                    self.counters.replies_forged.fetch_add(1, Relaxed);
                    warn!(board, request_id = %reply.id, owner = %f.view.board, "reply to another board's request dropped");
                    return;
                }
                Some(f) => f.replies.clone(),
            }
        };
        // Bounded: a board streaming output faster than Roost reads it waits here.
        let _ = tx.send(reply).await;
    }

    // -----------------------------------------------------------------------------------------
    // Registry views

    /// Approved boards, by name.
    pub fn list(&self) -> Vec<BoardEntry> {
        self.lock().reg.boards.values().cloned().collect()
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

    /// Registers a request to `board` if the board may be sent one now.
    pub(crate) fn begin(self: &Arc<Self>, board: &str, op: &str) -> Result<Call, String> {
        let mut inner = self.lock();
        let entry = inner.reg.boards.get(board).ok_or_else(|| {
            if inner.reg.pending.contains_key(board) {
                format!("board '{board}' is not approved yet (roost board scan; roost board approve)")
            } else {
                format!("no board named '{board}'")
            }
        })?;
        entry.ready()?;
        if !inner.board_conn.contains_key(board) {
            return Err(format!("board '{board}' is offline"));
        }
        let id = format!("{}-{}", self.id_prefix, self.next_id.fetch_add(1, Relaxed));
        let (tx, rx) = mpsc::channel(256);
        let gone = inner.gone.entry(board.to_owned()).or_default().clone();
        inner.inflight.insert(
            id.clone(),
            Inflight {
                view: InflightView {
                    request_id: id.clone(),
                    board: board.to_owned(),
                    op: op.to_owned(),
                    state: RequestState::Queued,
                    started_ms: now_ms(),
                },
                replies: tx,
                gone: gone.clone(),
            },
        );
        let topic = roost_core::board::cmd_topic(board).map_err(|e| e.to_string())?;
        Ok(Call {
            svc: self.clone(),
            id,
            board: board.to_owned(),
            topic,
            replies: rx,
            gone,
            next_seq: 0,
            early: BTreeMap::new(),
        })
    }

    fn set_state(&self, id: &str, state: RequestState) {
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

impl Call {
    /// Publishes one message of this request.
    pub(crate) async fn send(&self, op: Op) -> Result<(), String> {
        let publisher =
            self.svc.publisher.get().ok_or_else(|| "the mqtt broker is not running".to_owned())?;
        let payload = Request { id: self.id.clone(), op }.to_json();
        publisher.publish(self.topic.clone(), payload).await?;
        self.svc.counters.requests_sent.fetch_add(1, Relaxed);
        if self.state() == RequestState::Queued {
            self.svc.set_state(&self.id, RequestState::Sent);
        }
        Ok(())
    }

    fn state(&self) -> RequestState {
        self.svc.lock().inflight.get(&self.id).map_or(RequestState::Queued, |f| f.view.state)
    }

    /// The next reply in `seq` order (duplicates dropped), until `deadline` or the board goes.
    /// Replies that arrived before the board went are still delivered.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Result<ReplyBody, Stop> {
        loop {
            if let Some(reply) = self.early.remove(&self.next_seq) {
                return Ok(self.take(reply));
            }
            let reply = match self.replies.try_recv() {
                Ok(reply) => reply,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(Stop::Offline("request dropped".into()))
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    if self.gone.token.is_cancelled() {
                        return Err(Stop::Offline(self.gone.reason()));
                    }
                    tokio::select! {
                        biased;
                        reply = self.replies.recv() => match reply {
                            Some(reply) => reply,
                            None => return Err(Stop::Offline("request dropped".into())),
                        },
                        _ = self.gone.token.cancelled() => continue,
                        _ = tokio::time::sleep_until(deadline) => return Err(Stop::Deadline),
                    }
                }
            };
            if reply.seq == self.next_seq {
                return Ok(self.take(reply));
            }
            if reply.seq > self.next_seq && self.early.len() < 1024 {
                self.early.insert(reply.seq, reply);
            }
            // Otherwise a QoS 1 duplicate.
        }
    }

    fn take(&mut self, reply: Reply) -> ReplyBody {
        self.next_seq = reply.seq + 1;
        if !reply.is_final() && self.state() != RequestState::Running {
            self.svc.set_state(&self.id, RequestState::Running);
        }
        reply.body
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.svc.lock().inflight.remove(&self.id);
    }
}

/// Fails everything in flight to `board` and marks it offline.
fn mark_offline(inner: &mut Inner, board: &str, reason: &str) {
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

fn fire_gone(inner: &mut Inner, board: &str, reason: &str) {
    if let Some(gone) = inner.gone.remove(board) {
        if inner.inflight.values().any(|f| Arc::ptr_eq(&f.gone, &gone)) {
            info!(board, reason, "failing the board's requests in flight");
        }
        gone.fire(reason);
    }
}

fn bad_status(entry: &mut BoardEntry, e: &roost_core::board::ProtocolError, now: u64) {
    entry.state = ListedState::BadStatus;
    entry.state_detail = Some(e.to_string());
    entry.last_seen_ms = now;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
