//! `roost-spool`: an on-disk queue of byte entries, one per sink, between ingest and the
//! database.
//!
//! - Appends go to one writer thread that gathers every append waiting at that moment, writes
//!   them as checksummed frames ([`frame`]) to the active segment file, and syncs once for the
//!   whole group (group commit): [`Spool::append`] resolves when its entries are durable as the
//!   [`FsyncPolicy`] defines it.
//! - One [`Reader`] consumes the entries in order and acknowledges them; segments whose entries
//!   are all acknowledged are deleted, and the acknowledged position is kept in a cursor file, so
//!   a restart resumes where the consumer stopped.
//! - The spool holds at most [`SpoolConfig::max_bytes`]; when full, appends wait
//!   ([`FullPolicy::Block`]) or the oldest segment is dropped and counted
//!   ([`FullPolicy::DropOldest`]).
//! - On open, every segment is checked: a torn tail is cut off, a damaged range is skipped, and
//!   both are counted in the [`Recovery`] report.
//! - A write that fails (a full disk, an I/O error) is retried until it succeeds, with a log line
//!   when it starts failing and one when it recovers: appends wait meanwhile, nothing is lost.
//!
//! Why our own: the write-ahead-log crates looked at (walogs, wal-db, okaywal, yaque, queue-file)
//! either sync per append with no group commit across concurrent writers, have no byte bound
//! with a drop-oldest policy, no consumer cursor, or stop at the first damaged frame; and none is
//! widely used. This one is small, and its format is documented in [`frame`].

pub mod frame;
mod reader;
mod segments;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::{oneshot, watch, Semaphore};

pub use reader::{Entry, Reader, CURSOR_SYNC_INTERVAL};
use segments::{Cursor, Segment};

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After `fdatasync`, once per group of appends (the default): survives power loss.
    Always,
    /// After the write; synced at least this often: a crash of Roost loses nothing, a power
    /// cut loses up to this much.
    Interval(Duration),
    /// After the write, never synced by Roost: survives a crash of Roost, not of the machine.
    Never,
}

/// What an append does when the spool holds `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait for the consumer to free space: backpressure reaches the publishers.
    Block,
    /// Delete the oldest segment, counting its unread entries as dropped (entries the consumer
    /// has read and not yet acknowledged are still consumed: it has them).
    DropOldest,
}

/// How a spool behaves.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The most bytes of segments on disk.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    pub full: FullPolicy,
    pub fsync: FsyncPolicy,
    /// The most bytes of appends waiting for the writer, in memory; more appends wait.
    pub max_pending_bytes: usize,
    /// What an entry weighs (the records it holds, say), for [`SpoolStats::dropped_weight_total`]:
    /// a segment dropped by [`FullPolicy::DropOldest`] is read back and its unconsumed entries
    /// weighed before it is deleted. `None`: not weighed.
    pub weigh: Option<fn(&[u8]) -> u64>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            full: FullPolicy::Block,
            fsync: FsyncPolicy::Always,
            max_pending_bytes: 32 << 20,
            weigh: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("the spool is closed")]
    Closed,
    #[error("an entry of {size} bytes is larger than the spool's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// What opening a spool found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Entries waiting to be consumed.
    pub entries: u64,
    pub bytes: u64,
    /// Bytes cut off the end of the last segment (a write torn by a crash).
    pub torn_tail_bytes: u64,
    /// Bytes that were not valid frames anywhere (including the torn tail).
    pub damaged_bytes: u64,
    /// Entries known lost in damaged ranges.
    pub lost_entries: u64,
}

/// A spool's figures, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries appended and not yet acknowledged.
    pub entries: u64,
    /// Bytes of segments on disk.
    pub bytes: u64,
    /// How long the oldest unacknowledged entry has waited.
    pub oldest_age: Option<Duration>,
    pub appended_total: u64,
    /// Groups of appends written together (one sync each under [`FsyncPolicy::Always`]).
    pub commits_total: u64,
    /// Entries deleted unconsumed by [`FullPolicy::DropOldest`].
    pub dropped_total: u64,
    /// What those entries weighed ([`SpoolConfig::weigh`]; 0 without it).
    pub dropped_weight_total: u64,
    /// Entries lost to damage found on open or while reading.
    pub damaged_total: u64,
    /// Failed writes or syncs (each retried).
    pub write_errors_total: u64,
    /// Whether appends are waiting for space.
    pub full: bool,
}

/// State shared by the writer, the reader and the handles.
struct Shared {
    dir: PathBuf,
    config: SpoolConfig,
    state: Mutex<State>,
    /// Signalled when the reader frees space or the spool closes.
    space: Condvar,
    /// The sequence number after the last durable entry.
    durable: watch::Sender<u64>,
    appended: AtomicU64,
    commits: AtomicU64,
    dropped: AtomicU64,
    dropped_weight: AtomicU64,
    damaged: AtomicU64,
    write_errors: AtomicU64,
}

struct State {
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<Segment>,
    /// Every entry below this is consumed.
    acked: u64,
    /// Every entry below this has been read (and is being consumed): a full spool under
    /// [`FullPolicy::DropOldest`] does not count those as dropped.
    read: u64,
    cursor: Cursor,
    /// Bytes of all segments.
    bytes: u64,
    /// When entries were appended: `(first seq, ms since the epoch)`, at most one mark per
    /// second, oldest first; the first mark covers the oldest unacknowledged entry.
    marks: VecDeque<(u64, u64)>,
    /// Appends are waiting for space.
    full: bool,
    /// The writer has stopped: nothing more will be appended.
    closed: bool,
    /// The reader is gone: nothing will free space any more.
    reader_gone: bool,
}

impl State {
    /// Deletes the segments before the active one whose entries are all consumed.
    fn delete_consumed(&mut self) {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.next_seq <= self.acked) {
            let s = self.segments.pop_front().unwrap();
            self.bytes -= s.len;
            if let Err(e) = std::fs::remove_file(&s.path) {
                tracing::warn!(segment = %s.path.display(), error = %e, "cannot delete a consumed spool segment");
            }
        }
        while self.marks.len() > 1 && self.marks[1].0 <= self.acked {
            self.marks.pop_front();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sync_enabled(&self) -> bool {
        self.config.fsync != FsyncPolicy::Never
    }
}

/// An append waiting for the writer.
struct Append {
    entries: Vec<Vec<u8>>,
    bytes: usize,
    done: oneshot::Sender<Result<u64, SpoolError>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The appending side of a spool; cloneable. The writer stops when every handle is dropped.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: crossbeam_channel::Sender<Append>,
    pending: Arc<Semaphore>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.shared.dir).finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Spool {
    /// Opens the spool in `dir` (created if missing), recovering what a crash left, and starts
    /// its writer thread. Returns the appending handle, the one reader, and what recovery found.
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<(Spool, Reader, Recovery), SpoolError> {
        std::fs::create_dir_all(dir)
            .map_err(segments::io_err(format!("creating spool directory {}", dir.display())))?;
        let scan = segments::scan(dir)?;
        let (cursor, acked) = Cursor::open(dir)?;
        let mut segs: VecDeque<Segment> = scan.segments.into();
        // Entries before the first segment are gone (consumed, or dropped when full).
        let acked = acked.max(segs.front().map_or(0, |s| s.first_seq));
        // Segments wholly consumed before the crash are deleted now.
        while segs.len() > 1 && segs.front().is_some_and(|s| s.next_seq <= acked) {
            let s = segs.pop_front().unwrap();
            std::fs::remove_file(&s.path)
                .map_err(segments::io_err(format!("deleting spool segment {}", s.path.display())))?;
        }
        let next_seq = segs.back().map_or(acked, |s| s.next_seq).max(acked);
        if segs.back().is_none_or(|s| s.next_seq < next_seq) {
            // No segment, or the cursor is ahead of the data (segments deleted by hand).
            let (seg, _) = segments::create(dir, next_seq, config.fsync != FsyncPolicy::Never)?;
            segs.push_back(seg);
        }
        let bytes = segs.iter().map(|s| s.len).sum();
        let entries = next_seq.saturating_sub(acked.max(segs.front().map_or(0, |s| s.first_seq)));
        let recovery = Recovery {
            entries,
            bytes,
            torn_tail_bytes: scan.torn_tail_bytes,
            damaged_bytes: scan.damaged_bytes,
            lost_entries: scan.lost_entries,
        };
        let marks = segs
            .iter()
            .filter(|s| s.next_seq > acked)
            .filter_map(|s| Some((s.first_seq, s.first_ms?)))
            .collect();
        let (durable, _) = watch::channel(next_seq);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments: segs,
                acked,
                read: acked,
                cursor,
                bytes,
                marks,
                full: false,
                closed: false,
                reader_gone: false,
            }),
            space: Condvar::new(),
            durable,
            appended: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_weight: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            config: config.clone(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        writer::start(shared.clone(), rx)?;
        let reader = Reader::new(shared.clone(), acked);
        let pending = Arc::new(Semaphore::new(config.max_pending_bytes.min(Semaphore::MAX_PERMITS)));
        Ok((Spool { shared, tx, pending }, reader, recovery))
    }

    /// Appends entries, in order, and resolves once they are durable (see [`FsyncPolicy`]),
    /// with the sequence number of the last one. Waits while the spool is full
    /// ([`FullPolicy::Block`]) or too many appends are waiting for the writer.
    pub async fn append(&self, entries: Vec<Vec<u8>>) -> Result<u64, SpoolError> {
        let bytes: usize = entries.iter().map(|e| frame::HEADER + e.len()).sum();
        let limit = self.shared.config.max_pending_bytes.min(Semaphore::MAX_PERMITS);
        if let Some(e) = entries.iter().find(|e| e.len() > frame::MAX_PAYLOAD) {
            return Err(SpoolError::TooLarge { size: e.len(), limit: frame::MAX_PAYLOAD });
        }
        // An append larger than the whole pending budget takes all of it.
        let permits = bytes.clamp(1, limit) as u32;
        let permit =
            self.pending.clone().acquire_many_owned(permits).await.map_err(|_| SpoolError::Closed)?;
        let (done, rx) = oneshot::channel();
        self.tx.send(Append { entries, bytes, done, _permit: permit }).map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)?
    }

    /// The spool's figures now.
    pub fn stats(&self) -> SpoolStats {
        stats(&self.shared)
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A view of the spool's figures that, unlike a [`Spool`], does not keep it open.
    pub fn monitor(&self) -> Monitor {
        Monitor(self.shared.clone())
    }
}

/// Reads a spool's figures (for status and metrics) without keeping its writer running.
#[derive(Clone)]
pub struct Monitor(Arc<Shared>);

impl Monitor {
    /// The spool's figures now.
    pub fn stats(&self) -> SpoolStats {
        stats(&self.0)
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("dir", &self.0.dir).finish()
    }
}

fn stats(shared: &Shared) -> SpoolStats {
    let next = *shared.durable.borrow();
    let st = shared.lock();
    let first = st.segments.front().map_or(next, |s| s.first_seq);
    SpoolStats {
        entries: next.saturating_sub(st.acked.max(first)),
        bytes: st.bytes,
        oldest_age: (next > st.acked)
            .then(|| st.marks.front())
            .flatten()
            .map(|(_, ms)| Duration::from_millis(now_ms().saturating_sub(*ms))),
        appended_total: shared.appended.load(Relaxed),
        commits_total: shared.commits.load(Relaxed),
        dropped_total: shared.dropped.load(Relaxed),
        dropped_weight_total: shared.dropped_weight.load(Relaxed),
        damaged_total: shared.damaged.load(Relaxed),
        write_errors_total: shared.write_errors.load(Relaxed),
        full: st.full,
    }
}

#[cfg(test)]
mod tests;
