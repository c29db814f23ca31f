//! The pipeline actors. Each [`PipelineActor`] takes messages from its bounded mailbox (filled
//! by [`crate::ingest`]), runs its processor over them and hands the records to its sinks. Every
//! hand-off awaits capacity, so a slow database slows publishers down instead of growing a queue
//! or dropping data.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use roost_core::{Message, Record};
use roost_processors::pool::{self, PoolStopped, Processed, WorkerPool};
use roost_processors::Processor;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::deadletter::{DeadLetters, Letter};
use crate::ratelimit::RateLimit;
use crate::sink::SinkHandle;
use crate::stats::PipelineStats;

/// Messages queued per pipeline before the broker waits.
pub const MAILBOX_MESSAGES: usize = 4096;
/// Messages a pipeline takes from its mailbox at once.
const CHUNK: usize = 256;

/// Where a pipeline's processor runs.
pub enum Stage {
    /// On the pipeline's own task: the built-in JSON mapping (cheap, no hand-off).
    Inline(Box<dyn Processor>),
    /// On worker threads: WebAssembly processors. Up to one batch per worker is in flight;
    /// records reach the sinks in message order.
    Pool(WorkerPool),
}

/// One pipeline: its processor and its sinks.
pub struct PipelineActor {
    stage: Stage,
    rx: mpsc::Receiver<Message>,
    sinks: Vec<SinkHandle>,
    stats: Arc<PipelineStats>,
    /// Cancelled when Roost stops taking messages: close the mailbox, drain it, exit.
    stop_intake: CancellationToken,
    dead_letters: DeadLetters,
    error_log: RateLimit,
}

impl PipelineActor {
    pub fn new(
        name: &str,
        stage: Stage,
        sinks: Vec<SinkHandle>,
        stop_intake: CancellationToken,
        dead_letters: DeadLetters,
    ) -> (PipelineActor, mpsc::Sender<Message>) {
        let (tx, rx) = mpsc::channel(MAILBOX_MESSAGES);
        let actor = PipelineActor {
            stage,
            rx,
            sinks,
            stats: Arc::new(PipelineStats::new(name)),
            stop_intake,
            dead_letters,
            error_log: RateLimit::new(10, Duration::from_secs(10)),
        };
        (actor, tx)
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    pub async fn run(mut self) {
        let mut messages = Vec::with_capacity(CHUNK);
        let mut in_flight = FuturesOrdered::new();
        let capacity = match &self.stage {
            Stage::Inline(_) => 1,
            Stage::Pool(pool) => pool.workers(),
        };
        loop {
            let n = tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    self.finish(done).await;
                    continue;
                }
                n = self.rx.recv_many(&mut messages, CHUNK), if in_flight.len() < capacity => n,
                _ = self.stop_intake.cancelled(), if !self.rx.is_closed() => {
                    // Refuse new messages; those already queued are still received below.
                    self.rx.close();
                    continue;
                }
            };
            if n == 0 {
                while let Some(done) = in_flight.next().await {
                    self.finish(done).await;
                }
                break;
            }
            let batch = std::mem::replace(&mut messages, Vec::with_capacity(CHUNK));
            match &mut self.stage {
                Stage::Inline(processor) => {
                    let done = pool::run(processor, batch, None);
                    self.finish(Ok(done)).await;
                }
                Stage::Pool(pool) => {
                    let pool = pool.clone();
                    in_flight.push_back(async move { pool.process(batch).await });
                }
            }
        }
        info!(pipeline = %self.stats.name, messages = self.stats.messages.load(Relaxed), "pipeline stopped");
    }

    /// Counts a processed batch, keeps its failures as dead letters and hands its records on.
    async fn finish(&mut self, done: Result<Processed, PoolStopped>) {
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                // Only if a worker thread died outside a processor call: nothing to recover.
                error!(pipeline = %self.stats.name, error = %e, "processor workers gone; a batch was lost");
                return;
            }
        };
        self.stats.messages.fetch_add(done.messages as u64, Relaxed);
        for (msg, e) in done.failed {
            self.stats.errors.fetch_add(1, Relaxed);
            if let Some(suppressed) = self.error_log.check() {
                warn!(pipeline = %self.stats.name, topic = %msg.topic, client_id = %msg.client_id,
                      error = %e, suppressed, "message not processed, kept in the dead-letter store");
            }
            self.dead_letters
                .put(Letter::Message {
                    pipeline: self.stats.name.clone(),
                    reason: e.to_string(),
                    message: msg,
                })
                .await;
        }
        if done.records.is_empty() {
            return;
        }
        self.stats.records.fetch_add(done.records.len() as u64, Relaxed);
        deliver(&self.sinks, &self.stats.name, done.records).await;
    }
}

/// Hands records to every sink, the original to the last one.
async fn deliver(sinks: &[SinkHandle], pipeline: &str, records: Vec<Record>) {
    let Some((last, others)) = sinks.split_last() else { return };
    for sink in others {
        if !sink.send(records.clone()).await {
            warn!(pipeline, sink = %sink.name, "sink stopped before its pipeline");
        }
    }
    if !last.send(records).await {
        warn!(pipeline, sink = %last.name, "sink stopped before its pipeline");
    }
}
