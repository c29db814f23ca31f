//! The sink actor: one per configured sink. It owns the [`Sink`], reads records from a bounded
//! mailbox, gathers them into batches (by size, or when the first record has waited the linger
//! time), and writes one batch at a time, retrying with backoff while the database is away.
//!
//! While a write is retried the mailbox fills and senders wait: backpressure reaches the broker
//! instead of an unbounded queue growing. When every sender is gone the actor flushes what it
//! holds and exits. At the stop deadline it stops retrying, and cuts a write still in flight:
//! what it could not write goes to the dead-letter store.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_connectors::{Sink, SinkError};
use roost_core::Record;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::deadletter::{DeadLetters, Letter};
use crate::ratelimit::RateLimit;
use crate::stats::SinkStats;

/// Chunks of records queued per sink before senders wait.
pub const MAILBOX_CHUNKS: usize = 1024;

/// The sending side of a sink's mailbox.
#[derive(Clone)]
pub struct SinkHandle {
    pub name: String,
    tx: mpsc::Sender<Vec<Record>>,
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// Queues records, waiting while the mailbox is full. `false` if the sink has stopped.
    pub async fn send(&self, records: Vec<Record>) -> bool {
        let n = records.len() as u64;
        self.stats.records_in.fetch_add(n, Relaxed);
        if self.tx.send(records).await.is_err() {
            self.stats.records_in.fetch_sub(n, Relaxed);
            return false;
        }
        true
    }
}

/// A sink and its batching.
pub struct SinkActor {
    sink: Box<dyn Sink>,
    rx: mpsc::Receiver<Vec<Record>>,
    batch_size: usize,
    linger: Duration,
    stats: Arc<SinkStats>,
    /// Cancelled at the stop deadline: stop retrying, put what is left in the dead-letter store.
    give_up: CancellationToken,
    dead_letters: DeadLetters,
    rejected_log: RateLimit,
    /// Since when writes have been failing (the sink is down), for one log line when it goes
    /// down and one when it recovers.
    down_since: Option<Instant>,
}

impl SinkActor {
    pub fn new(
        name: &str,
        sink: Box<dyn Sink>,
        batch_size: usize,
        linger: Duration,
        give_up: CancellationToken,
        dead_letters: DeadLetters,
    ) -> (SinkActor, SinkHandle) {
        let (tx, rx) = mpsc::channel(MAILBOX_CHUNKS);
        let stats = Arc::new(SinkStats::new(name, sink.kind()));
        let handle = SinkHandle { name: name.into(), tx, stats: stats.clone() };
        let actor = SinkActor {
            sink,
            rx,
            batch_size: batch_size.max(1),
            linger,
            stats,
            give_up,
            dead_letters,
            rejected_log: RateLimit::new(10, Duration::from_secs(10)),
            down_since: None,
        };
        (actor, handle)
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Runs until every sender is dropped and the last batch is flushed.
    pub async fn run(mut self) {
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch_size);
        let mut chunks: Vec<Vec<Record>> = Vec::new();
        let mut open = true;
        while open {
            // Wait for the first records of a batch, then gather until full or lingered.
            match self.rx.recv().await {
                Some(chunk) => batch.extend(chunk),
                None => break,
            }
            let deadline = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.rx.recv_many(&mut chunks, 64)).await {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(_) => chunks.drain(..).for_each(|c| batch.extend(c)),
                    Err(_) => break,
                }
            }
            while batch.len() >= self.batch_size {
                let rest = batch.split_off(self.batch_size);
                self.flush(std::mem::replace(&mut batch, rest)).await;
            }
            if !batch.is_empty() {
                self.flush(std::mem::take(&mut batch)).await;
            }
        }
        info!(sink = %self.stats.name, written = self.stats.records_written.load(Relaxed), "sink stopped");
    }

    /// Writes one batch, retrying while the database is unavailable.
    async fn flush(&mut self, batch: Vec<Record>) {
        let batch = Arc::new(batch);
        let mut backoff = Duration::from_millis(100);
        loop {
            // Past the stop deadline nothing is tried any more (a write to a dead database can
            // take a whole connect timeout): what is left goes to the dead-letter store.
            if self.give_up.is_cancelled() {
                let e = SinkError::Unavailable("stop deadline passed".into());
                self.fail(&batch, &e).await;
                return;
            }
            let started = Instant::now();
            // A write hung on a dead peer is raced against the stop deadline: past it the batch
            // goes to the dead-letter store (it may also have reached the database: a replay
            // can then write it twice) instead of being lost with the process.
            let result = tokio::select! {
                result = self.sink.write(batch.clone()) => Some(result),
                _ = self.give_up.cancelled() => None,
            };
            let Some(result) = result else {
                let e = SinkError::Unavailable("stop deadline passed while a write was in flight".into());
                self.fail(&batch, &e).await;
                return;
            };
            let elapsed = started.elapsed();
            match result {
                Ok(outcome) => {
                    if let Some(since) = self.down_since.take() {
                        info!(sink = %self.stats.name, down_ms = since.elapsed().as_millis() as u64, "sink recovered");
                    }
                    self.stats.records_written.fetch_add(outcome.written as u64, Relaxed);
                    self.stats.records_rejected.fetch_add(outcome.rejected.len() as u64, Relaxed);
                    self.stats.batches.fetch_add(1, Relaxed);
                    self.stats.write_latency.observe(elapsed);
                    self.stats.set_error(None);
                    for r in &outcome.rejected {
                        let record = &batch[r.index];
                        if let Some(suppressed) = self.rejected_log.check() {
                            warn!(sink = %self.stats.name, measurement = %record.measurement, device = %record.device,
                                  reason = %r.reason, suppressed, "record rejected, kept in the dead-letter store");
                        }
                        self.dead_letters
                            .put(Letter::Record {
                                sink: self.stats.name.clone(),
                                reason: r.reason.clone(),
                                record: record.clone(),
                            })
                            .await;
                    }
                    return;
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Relaxed);
                    self.stats.set_error(Some(e.to_string()));
                    if !e.is_retryable() {
                        self.fail(&batch, &e).await;
                        return;
                    }
                    let wait = jittered(backoff);
                    if self.down_since.is_none() {
                        self.down_since = Some(Instant::now());
                        warn!(sink = %self.stats.name, records = batch.len(), error = %e,
                              "sink down: writes fail, retrying with backoff until it recovers");
                    } else {
                        debug!(sink = %self.stats.name, error = %e, retry_in_ms = wait.as_millis() as u64,
                               "write failed again, will retry");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.give_up.cancelled() => {
                            self.fail(&batch, &e).await;
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Gives up on a batch: its records go to the dead-letter store, to be replayed.
    async fn fail(&mut self, batch: &[Record], e: &SinkError) {
        self.stats.records_failed.fetch_add(batch.len() as u64, Relaxed);
        error!(sink = %self.stats.name, records = batch.len(), error = %e,
               "batch not written, kept in the dead-letter store");
        let reason = format!("not written: {e}");
        for record in batch {
            self.dead_letters
                .put(Letter::Record {
                    sink: self.stats.name.clone(),
                    reason: reason.clone(),
                    record: record.clone(),
                })
                .await;
        }
    }
}

/// A retry delay between half and all of `backoff`, so that sinks (and Roost nodes) that failed
/// together do not retry in step.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::random_range(0.5..=1.0))
}
