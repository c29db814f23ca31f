//! The sink actor: one per configured sink, draining its own spool on disk.
//!
//! - [`SinkHandle::send`] appends records to the sink's spool and resolves once they are durable
//!   (the spool's fsync policy): what ingest awaits before the broker sends a PUBACK.
//! - The actor reads the spool in order, gathers whole entries into a batch (by size, or once the
//!   first has waited the linger time), and writes one batch at a time with
//!   [`roost_connectors::Sink::write_at`], retrying with backoff while the database is away
//!   ([`write`]). Spool entries are acknowledged only once the database has the batch, or its
//!   refused records are in the dead-letter store; a restart resumes from the spool, skipping
//!   what the sink says it already committed.
//! - Each sink has its own spool, so a dead database fills only its own spool: other sinks,
//!   pipelines and publishers go on until that spool is full (then `block` waits, `drop-oldest`
//!   drops and counts).
//! - When every sender is gone the actor drains its spool and exits. At the stop deadline it stops
//!   where it is (a write in flight is cut): what is left stays in the spool for the next start.

mod codec;
pub mod settings;
mod write;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_connectors::{Position, Sink};
use roost_core::Record;
use roost_spool::{Entry, Reader, Recovery, Spool, SpoolError};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::deadletter::DeadLetters;
use crate::ratelimit::RateLimit;
use crate::stats::SinkStats;

/// Bytes of records per spool entry (a pipeline batch larger than this takes several entries).
const ENTRY_BYTES: usize = 1 << 20;
/// The first wait before trying a failed database again (doubling up to `write::MAX_BACKOFF`).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes of entries read from the spool at once.
const READ_BYTES: usize = 16 << 20;

/// The sending side of a sink: its spool.
#[derive(Clone)]
pub struct SinkHandle {
    pub name: String,
    spool: Spool,
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// Appends records to the sink's spool and resolves once they are durable. Waits while the
    /// spool is full (policy `block`). An error means they were not stored: the spool is closed
    /// (Roost is stopping) or an entry is too large.
    pub async fn send(&self, records: &[Record]) -> Result<(), SpoolError> {
        self.append(Encoded::new(records)).await
    }

    /// [`SinkHandle::send`] for records encoded once for several sinks.
    pub async fn append(&self, encoded: Encoded) -> Result<(), SpoolError> {
        if encoded.entries.is_empty() {
            return Ok(());
        }
        self.spool.append(encoded.entries).await?;
        self.stats.records_in.fetch_add(encoded.records, Relaxed);
        Ok(())
    }
}

/// Records in their spool form.
#[derive(Clone)]
pub struct Encoded {
    entries: Vec<Vec<u8>>,
    records: u64,
}

impl Encoded {
    pub fn new(records: &[Record]) -> Encoded {
        Encoded { entries: codec::encode_chunks(records, ENTRY_BYTES), records: records.len() as u64 }
    }
}

/// A batch read back from the spool: whole entries.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    /// One id per record: `entry seq << 20 | index in the entry`.
    ids: Vec<u64>,
    /// The last entry read (written or skipped), to acknowledge once the batch is done.
    last_seq: Option<u64>,
}

/// A sink, its spool and its batching.
pub struct SinkActor {
    sink: Box<dyn Sink>,
    stream: String,
    reader: Option<Reader>,
    batch_size: usize,
    linger: Duration,
    stats: Arc<SinkStats>,
    /// Cancelled at the stop deadline: stop where it is, the spool keeps the rest.
    give_up: CancellationToken,
    dead_letters: DeadLetters,
    rejected_log: RateLimit,
    /// Since when writes have been failing (the sink is down), for one log line when it goes
    /// down and one when it recovers.
    down_since: Option<Instant>,
}

/// How a sink drains its spool.
pub struct SinkParams {
    /// The spool's stream name ([`settings::stream`]), under which the sink stores positions.
    pub stream: String,
    pub batch_size: usize,
    pub linger: Duration,
    pub give_up: CancellationToken,
    pub dead_letters: DeadLetters,
}

impl SinkActor {
    /// The actor for `sink`, draining the spool as [`Spool::open`] returned it.
    pub fn new(
        name: &str,
        sink: Box<dyn Sink>,
        (spool, reader, recovery): (Spool, Reader, Recovery),
        params: SinkParams,
    ) -> (SinkActor, SinkHandle) {
        let stats =
            Arc::new(SinkStats::new(name, sink.kind(), spool.monitor(), recovery, sink.replay_safety()));
        let handle = SinkHandle { name: name.into(), spool, stats: stats.clone() };
        let actor = SinkActor {
            sink,
            stream: params.stream,
            reader: Some(reader),
            batch_size: params.batch_size.max(1),
            linger: params.linger,
            stats,
            give_up: params.give_up,
            dead_letters: params.dead_letters,
            rejected_log: RateLimit::new(10, Duration::from_secs(10)),
            down_since: None,
        };
        (actor, handle)
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Runs until every sender is dropped and the spool is drained, or the stop deadline.
    pub async fn run(mut self) {
        let Some(committed) = self.resume().await else { return self.stopped() };
        let mut reader = self.reader.take().expect("run once");
        loop {
            let more = tokio::select! {
                more = reader.wait() => more,
                _ = self.give_up.cancelled() => false,
            };
            if !more {
                break;
            }
            let Some((r, batch)) = self.gather(reader, committed).await else { return self.stopped() };
            reader = r;
            let Some(last) = batch.last_seq else { continue };
            if !batch.records.is_empty() {
                let position = Position { stream: self.stream.clone(), seq: last, ids: Arc::new(batch.ids) };
                if !self.flush(batch.records, &position).await {
                    break;
                }
            }
            if let Err(e) = reader.ack(last) {
                // The entries are written; a restart would write them again (the sink's replay
                // safety decides whether that duplicates them).
                error!(sink = %self.stats.name, error = %e, "cannot acknowledge spool entries");
            }
        }
        self.stopped();
    }

    fn stopped(&self) {
        let left = self.stats.spool.stats();
        info!(sink = %self.stats.name, written = self.stats.records_written.load(Relaxed),
              spool_entries = left.entries, "sink stopped");
    }

    /// The position the database already holds, asked once before draining; `None` at the stop
    /// deadline. A sink that keeps no positions answers `None` at once.
    async fn resume(&mut self) -> Option<Option<u64>> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = tokio::select! {
                r = self.sink.committed(&self.stream) => r,
                _ = self.give_up.cancelled() => return None,
            };
            match result {
                Ok(seq) => {
                    self.up();
                    return Some(seq);
                }
                Err(e) => {
                    if !self.retry_after(&e, &mut backoff, "cannot read its stored position").await {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads whole entries until the batch is full or the first has waited the linger time.
    /// Entries up to `committed` are skipped (the database has them). `None` if the reader is
    /// lost (a panic while reading).
    async fn gather(&mut self, mut reader: Reader, committed: Option<u64>) -> Option<(Reader, Batch)> {
        let deadline = tokio::time::Instant::now() + self.linger;
        let mut batch = Batch::default();
        loop {
            let want = self.batch_size.saturating_sub(batch.records.len()).max(1);
            let (r, read) = tokio::task::spawn_blocking(move || {
                let read = reader.read(want, READ_BYTES);
                (reader, read)
            })
            .await
            .map_err(|e| error!(sink = %self.stats.name, error = %e, "spool reader failed"))
            .ok()?;
            reader = r;
            match read {
                Ok(entries) => entries.into_iter().for_each(|e| self.take(&mut batch, e, committed)),
                Err(e) => {
                    error!(sink = %self.stats.name, error = %e, "cannot read the spool, retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if batch.records.len() >= self.batch_size {
                break;
            }
            match tokio::time::timeout_at(deadline, reader.wait()).await {
                Ok(true) => continue,
                _ => break,
            }
        }
        Some((reader, batch))
    }

    fn take(&self, batch: &mut Batch, entry: Entry, committed: Option<u64>) {
        batch.last_seq = Some(entry.seq);
        if committed.is_some_and(|c| entry.seq <= c) {
            return;
        }
        match codec::decode(&entry.data) {
            Ok(records) => {
                let base = entry.seq << codec::ID_BITS;
                batch.ids.extend((0..records.len() as u64).map(|i| base | i));
                batch.records.extend(records);
            }
            Err(e) => {
                // Its checksum matched, so this is not damage on disk: a bug, or a spool written
                // by another version. Nothing can read it; it is counted and skipped.
                self.stats.spool_undecodable.fetch_add(1, Relaxed);
                error!(sink = %self.stats.name, seq = entry.seq, error = %e, "spool entry skipped");
            }
        }
    }
}
