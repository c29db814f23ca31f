//! The pipeline actors. Each [`PipelineActor`] takes messages from its bounded mailbox (filled
//! by [`crate::ingest`]), runs its processor over them and appends the records to each of its
//! sinks' spools at once. A message's [`Inbound::done`] is answered once its records are on disk
//! in every sink's spool (or its failure is in the dead-letter store): that is what the broker
//! waits for before it sends the PUBACK. Appends of several batches are in flight together, so
//! the spools commit them in groups; a full spool slows publishers down instead of growing a
//! queue or dropping data.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use roost_core::{Message, Record};
use roost_processors::pool::{self, PoolStopped, Processed, WorkerPool};
use roost_processors::Processor;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::deadletter::{DeadLetters, Letter};
use crate::ratelimit::RateLimit;
use crate::sink::{Encoded, SinkHandle};
use crate::stats::PipelineStats;

/// Messages queued per pipeline before the broker waits.
pub const MAILBOX_MESSAGES: usize = 4096;
/// Payload bytes queued per pipeline before the broker waits (a message larger than this
/// waits until the mailbox is empty).
pub const MAILBOX_BYTES: usize = 64 << 20;
/// Messages a pipeline takes from its mailbox at once.
const CHUNK: usize = 256;
/// Batches whose records are being appended to the spools at once.
const SPOOLING: usize = 32;

/// A message for a pipeline, with whom to tell once it is stored.
#[derive(Debug)]
struct Inbound {
    msg: Message,
    /// Answered once the message's records are in every sink's spool or the message is in the
    /// dead-letter store; dropped unanswered if they could not be stored (Roost is stopping).
    done: Option<oneshot::Sender<()>>,
    /// Its payload's share of [`MAILBOX_BYTES`], given back when the pipeline takes it.
    _room: OwnedSemaphorePermit,
}

/// The sending side of a pipeline's mailbox, bounded in messages and in payload bytes.
#[derive(Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<Inbound>,
    room: Arc<Semaphore>,
}

/// The pipeline has stopped taking messages (Roost is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl Mailbox {
    /// Queues a message, waiting while the mailbox is full. With `track`, returns what answers
    /// once the message is stored (its records in every sink's spool, or the message in the
    /// dead-letter store); it is dropped unanswered if that could not be done.
    pub async fn send(&self, msg: Message, track: bool) -> Result<Option<oneshot::Receiver<()>>, Stopped> {
        let bytes = msg.payload.len().clamp(1, MAILBOX_BYTES) as u32;
        let room = self.room.clone().acquire_many_owned(bytes).await.map_err(|_| Stopped)?;
        let (done, stored) = if track {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.tx.send(Inbound { msg, done, _room: room }).await.map_err(|_| Stopped)?;
        Ok(stored)
    }
}

type Dones = Vec<oneshot::Sender<()>>;

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
    rx: mpsc::Receiver<Inbound>,
    sinks: Arc<[SinkHandle]>,
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
    ) -> (PipelineActor, Mailbox) {
        let (tx, rx) = mpsc::channel(MAILBOX_MESSAGES);
        let mailbox = Mailbox { tx, room: Arc::new(Semaphore::new(MAILBOX_BYTES)) };
        let actor = PipelineActor {
            stage,
            rx,
            sinks: sinks.into(),
            stats: Arc::new(PipelineStats::new(name)),
            stop_intake,
            dead_letters,
            error_log: RateLimit::new(10, Duration::from_secs(10)),
        };
        (actor, mailbox)
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    pub async fn run(mut self) {
        let mut inbound = Vec::with_capacity(CHUNK);
        let mut in_flight = FuturesOrdered::new();
        let mut spooling = FuturesUnordered::new();
        let capacity = match &self.stage {
            Stage::Inline(_) => 1,
            Stage::Pool(pool) => pool.workers(),
        };
        loop {
            let n = tokio::select! {
                biased;
                Some(()) = spooling.next(), if !spooling.is_empty() => continue,
                Some((done, dones)) = in_flight.next(), if !in_flight.is_empty() && spooling.len() < SPOOLING => {
                    spooling.push(self.finish(done, dones).await);
                    continue;
                }
                n = self.rx.recv_many(&mut inbound, CHUNK), if in_flight.len() < capacity && spooling.len() < SPOOLING => n,
                _ = self.stop_intake.cancelled(), if !self.rx.is_closed() => {
                    // Refuse new messages; those already queued are still received below.
                    self.rx.close();
                    continue;
                }
            };
            if n == 0 {
                while let Some((done, dones)) = in_flight.next().await {
                    spooling.push(self.finish(done, dones).await);
                }
                while spooling.next().await.is_some() {}
                break;
            }
            let (batch, dones): (Vec<Message>, Vec<_>) = inbound.drain(..).map(|i| (i.msg, i.done)).unzip();
            let dones: Dones = dones.into_iter().flatten().collect();
            match &mut self.stage {
                Stage::Inline(processor) => {
                    let done = pool::run(processor, batch, None);
                    spooling.push(self.finish(Ok(done), dones).await);
                }
                Stage::Pool(pool) => {
                    let pool = pool.clone();
                    in_flight.push_back(async move { (pool.process(batch).await, dones) });
                }
            }
        }
        info!(pipeline = %self.stats.name, messages = self.stats.messages.load(Relaxed), "pipeline stopped");
    }

    /// Counts a processed batch and keeps its failures as dead letters; returns the append of
    /// its records to the sinks' spools, which answers the batch's messages once done.
    async fn finish(
        &mut self,
        done: Result<Processed, PoolStopped>,
        dones: Dones,
    ) -> impl std::future::Future<Output = ()> + use<> {
        let sinks = self.sinks.clone();
        let pipeline = self.stats.name.clone();
        let records = match done {
            Ok(done) => self.count(done).await,
            Err(e) => {
                // Only if a worker thread died outside a processor call: the batch's messages
                // are not answered, so their publishers get no PUBACK and send them again.
                error!(pipeline = %self.stats.name, error = %e, "processor workers gone; a batch was not stored");
                return futures::future::Either::Left(std::future::ready(()));
            }
        };
        futures::future::Either::Right(async move {
            if deliver(&sinks, &pipeline, records).await {
                dones.into_iter().for_each(|d| _ = d.send(()));
            }
        })
    }

    /// Counts a processed batch, keeps its failures as dead letters (on disk before their
    /// messages are answered) and returns its records.
    async fn count(&mut self, done: Processed) -> Vec<Record> {
        self.stats.messages.fetch_add(done.messages as u64, Relaxed);
        let failed = !done.failed.is_empty();
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
        if failed {
            self.dead_letters.flush().await;
        }
        self.stats.records.fetch_add(done.records.len() as u64, Relaxed);
        done.records
    }
}

/// Appends records to every sink's spool at once; `true` once all have them on disk.
async fn deliver(sinks: &[SinkHandle], pipeline: &str, records: Vec<Record>) -> bool {
    if records.is_empty() {
        return true;
    }
    let encoded = Encoded::new(&records);
    let appends = sinks.iter().map(|sink| async {
        let result = sink.append(encoded.clone()).await;
        if let Err(e) = &result {
            warn!(pipeline, sink = %sink.name, error = %e, "records not stored in the sink's spool");
        }
        result.is_ok()
    });
    futures::future::join_all(appends).await.into_iter().all(|ok| ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_processors::JsonMapping;

    fn message(bytes: usize) -> Message {
        Message {
            topic: "devices/d/env".into(),
            client_id: "d".into(),
            device: "d".into(),
            payload: vec![b' '; bytes],
            received_at: 0,
            qos: 1,
            retain: false,
            user_properties: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_mailbox_holds_at_most_its_bytes_of_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let dead_letters = DeadLetters::open(dir.path(), &Default::default()).unwrap();
        let stage = Stage::Inline(Box::new(JsonMapping::default()));
        let (actor, mailbox) =
            PipelineActor::new("p", stage, Vec::new(), CancellationToken::new(), dead_letters);
        let mib = 1 << 20;
        for _ in 0..MAILBOX_BYTES / mib {
            mailbox.send(message(mib), false).await.unwrap();
        }
        // Full in bytes long before it is full in messages: the next send waits...
        let mut next = Box::pin(mailbox.send(message(mib), true));
        assert!(futures::poll!(next.as_mut()).is_pending());
        // ...until the pipeline takes what is queued.
        let run = tokio::spawn(actor.run());
        let stored = next.await.unwrap().expect("tracked");
        // Not JSON: the message is stored once it is in the dead-letter store.
        stored.await.unwrap();
        drop(mailbox);
        run.await.unwrap();
    }
}
