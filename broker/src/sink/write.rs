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
                    self.up();
                    self.stats.write_latency.observe(started.elapsed());
                    self.written(&batch, outcome).await;
                    return true;
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Relaxed);
                    if !e.is_retryable() {
                        self.stats.set_error(Some(e.to_string()));
                        self.fail(&batch, &e).await;
                        return true;
                    }
                    if !self.retry_after(&e, &mut backoff, "writes fail").await {
                        return false;
                    }
                }
            }
        }
    }

    /// The database answered: clears the last error, and says once that a sink that was down
    /// has recovered.
    pub(super) fn up(&mut self) {
        self.stats.set_error(None);
        if let Some(since) = self.down_since.take() {
            info!(sink = %self.stats.name, down_ms = since.elapsed().as_millis() as u64, "sink recovered");
        }
    }

    /// After a failure a retry can help: records the error, says once that the sink is down,
    /// and waits out the (jittered) backoff, doubling it up to [`MAX_BACKOFF`]. `false` if the
    /// stop deadline came first.
    pub(super) async fn retry_after(&mut self, e: &SinkError, backoff: &mut Duration, what: &str) -> bool {
        self.stats.set_error(Some(e.to_string()));
        let wait = jittered(*backoff);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            warn!(sink = %self.stats.name, error = %e,
                  "sink down: {what}, retrying with backoff until it recovers; records wait in the spool");
        } else {
            debug!(sink = %self.stats.name, error = %e, retry_in_ms = wait.as_millis() as u64, "{what} again, will retry");
        }
        self.stats.retrying.store(true, Relaxed);
        let waited = tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.give_up.cancelled() => false,
        };
        self.stats.retrying.store(false, Relaxed);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        waited
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
        }
        self.keep(outcome.rejected.iter().map(|r| (&batch[r.index], r.reason.clone()))).await;
    }

    /// Gives up on a batch the database will never take: its records go to the dead-letter store.
    async fn fail(&mut self, batch: &[Record], e: &SinkError) {
        self.stats.records_failed.fetch_add(batch.len() as u64, Relaxed);
        error!(sink = %self.stats.name, records = batch.len(), error = %e,
               "batch cannot be written, kept in the dead-letter store");
        let reason = format!("not written: {e}");
        self.keep(batch.iter().map(|record| (record, reason.clone()))).await;
    }

    /// Puts records in the dead-letter store, with why, and waits until they are on disk there:
    /// only then may the spool let them go.
    async fn keep<'r>(&mut self, records: impl Iterator<Item = (&'r Record, String)>) {
        for (record, reason) in records {
            let letter = Letter::Record { sink: self.stats.name.clone(), reason, record: record.clone() };
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
