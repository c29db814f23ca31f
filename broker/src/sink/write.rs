//! Writing one batch: retried with capped, jittered exponential backoff while the database is
//! away; refused records and batches that can never be written go to the dead-letter store
//! (and the store has them on disk) before the batch counts as done.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_connectors::{Position, SinkError, WriteOutcome};
use roost_core::Record;
use tracing::{debug, error, info, warn};

use super::SinkActor;
use crate::deadletter::Letter;

/// The longest wait between two tries.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl SinkActor {
    /// Writes one batch. `true` once it is done (written, or its refused records kept as dead
    /// letters): its spool entries may be acknowledged. `false` at the stop deadline: the batch
    /// stays in the spool (a write cut in flight may also have reached the database: the sink's
    /// stored position keeps the next start from writing it twice).
    pub(super) async fn flush(&mut self, records: Vec<Record>, position: &Position) -> bool {
        let batch = Arc::new(records);
        let mut backoff = super::FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                result = self.sink.write_at(batch.clone(), position) => result,
                _ = self.give_up.cancelled() => return false,
            };
            match result {
                Ok(outcome) => {
                    if let Some(since) = self.down_since.take() {
                        info!(sink = %self.stats.name, down_ms = since.elapsed().as_millis() as u64, "sink recovered");
                    }
                    self.stats.write_latency.observe(started.elapsed());
                    self.stats.set_error(None);
                    self.written(&batch, outcome).await;
                    return true;
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Relaxed);
                    self.stats.set_error(Some(e.to_string()));
                    if !e.is_retryable() {
                        self.fail(&batch, &e).await;
                        return true;
                    }
                    let wait = jittered(backoff);
                    if self.down_since.is_none() {
                        self.down_since = Some(Instant::now());
                        warn!(sink = %self.stats.name, records = batch.len(), error = %e,
                              "sink down: writes fail, retrying with backoff until it recovers; records wait in the spool");
                    } else {
                        debug!(sink = %self.stats.name, error = %e, retry_in_ms = wait.as_millis() as u64,
                               "write failed again, will retry");
                    }
                    self.stats.retrying.store(true, Relaxed);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.give_up.cancelled() => return false,
                    }
                    self.stats.retrying.store(false, Relaxed);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Counts a written batch and keeps its refused records as dead letters.
    async fn written(&mut self, batch: &[Record], outcome: WriteOutcome) {
        self.stats.records_written.fetch_add(outcome.written as u64, Relaxed);
        self.stats.records_rejected.fetch_add(outcome.rejected.len() as u64, Relaxed);
        // The rest the database already held: a batch replayed after a crash or a cut write.
        let held = batch.len().saturating_sub(outcome.written + outcome.rejected.len());
        self.stats.records_already_stored.fetch_add(held as u64, Relaxed);
        self.stats.batches.fetch_add(1, Relaxed);
        if outcome.rejected.is_empty() {
            return;
        }
        for r in &outcome.rejected {
            let record = &batch[r.index];
            if let Some(suppressed) = self.rejected_log.check() {
                warn!(sink = %self.stats.name, measurement = %record.measurement, device = %record.device,
                      reason = %r.reason, suppressed, "record rejected, kept in the dead-letter store");
            }
            let letter = Letter::Record {
                sink: self.stats.name.clone(),
                reason: r.reason.clone(),
                record: record.clone(),
            };
            self.dead_letters.put(letter).await;
        }
        // On disk before the spool lets the records go.
        self.dead_letters.flush().await;
    }

    /// Gives up on a batch the database will never take: its records go to the dead-letter store.
    async fn fail(&mut self, batch: &[Record], e: &SinkError) {
        self.stats.records_failed.fetch_add(batch.len() as u64, Relaxed);
        error!(sink = %self.stats.name, records = batch.len(), error = %e,
               "batch cannot be written, kept in the dead-letter store");
        let reason = format!("not written: {e}");
        for record in batch {
            let letter = Letter::Record {
                sink: self.stats.name.clone(),
                reason: reason.clone(),
                record: record.clone(),
            };
            self.dead_letters.put(letter).await;
        }
        self.dead_letters.flush().await;
    }
}

/// A retry delay between half and all of `backoff`, so that sinks (and Roost nodes) that failed
/// together do not retry in step.
pub(super) fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::random_range(0.5..=1.0))
}
