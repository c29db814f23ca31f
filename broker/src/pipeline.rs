//! Ingest and pipelines.
//!
//! [`Ingest`] is what the broker calls for every accepted PUBLISH: it finds the pipelines whose
//! topic filters match and hands the message to each one's bounded mailbox, waiting while it is
//! full. A [`PipelineActor`] runs its processor over each message and hands the records to its
//! sinks. Every hand-off awaits capacity, so a slow database slows publishers down instead of
//! growing a queue or dropping data.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use roost_core::{topic, Message, Record};
use roost_processors::Processor;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::deadletter::{DeadLetters, Letter};
use crate::sink::SinkHandle;
use crate::stats::{PipelineStats, RateLimit, Stats};

/// Messages queued per pipeline before the broker waits.
pub const MAILBOX_MESSAGES: usize = 4096;
/// Messages a pipeline takes from its mailbox at once.
const CHUNK: usize = 256;

/// The broker's way into the pipelines.
pub struct Ingest {
    routes: Vec<Route>,
    stats: Arc<Stats>,
}

struct Route {
    filters: Vec<String>,
    tx: mpsc::Sender<Message>,
}

/// Ingest is closed: Roost is stopping and takes no more messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Ingest {
    /// Takes one accepted message. Returns once every matching pipeline has queued it.
    pub async fn accept(&self, msg: Message) -> Result<(), Closed> {
        let targets: Vec<&Route> =
            self.routes.iter().filter(|r| r.filters.iter().any(|f| topic::matches(f, &msg.topic))).collect();
        let Some((last, others)) = targets.split_last() else {
            self.stats.messages_in.fetch_add(1, Relaxed);
            self.stats.messages_unrouted.fetch_add(1, Relaxed);
            return Ok(());
        };
        for route in others {
            route.tx.send(msg.clone()).await.map_err(|_| self.refused())?;
        }
        last.tx.send(msg).await.map_err(|_| self.refused())?;
        self.stats.messages_in.fetch_add(1, Relaxed);
        Ok(())
    }

    fn refused(&self) -> Closed {
        self.stats.messages_refused.fetch_add(1, Relaxed);
        Closed
    }
}

/// One pipeline: its processor and its sinks.
pub struct PipelineActor {
    processor: Box<dyn Processor>,
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
        processor: Box<dyn Processor>,
        sinks: Vec<SinkHandle>,
        stop_intake: CancellationToken,
        dead_letters: DeadLetters,
    ) -> (PipelineActor, mpsc::Sender<Message>) {
        let (tx, rx) = mpsc::channel(MAILBOX_MESSAGES);
        let actor = PipelineActor {
            processor,
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
        let mut records: Vec<Record> = Vec::with_capacity(CHUNK);
        loop {
            let n = tokio::select! {
                biased;
                n = self.rx.recv_many(&mut messages, CHUNK) => n,
                _ = self.stop_intake.cancelled(), if !self.rx.is_closed() => {
                    // Refuse new messages; those already queued are still received below.
                    self.rx.close();
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            for msg in messages.drain(..) {
                self.stats.messages.fetch_add(1, Relaxed);
                let before = records.len();
                if let Err(e) = self.processor.process(&msg, &mut records) {
                    records.truncate(before);
                    self.stats.errors.fetch_add(1, Relaxed);
                    if let Some(suppressed) = self.error_log.check() {
                        warn!(pipeline = %self.stats.name, topic = %msg.topic, client_id = %msg.client_id,
                              error = %e, suppressed, "message not mapped, kept in the dead-letter store");
                    }
                    let reason = e.to_string();
                    self.dead_letters.put(Letter::Message {
                        pipeline: self.stats.name.clone(),
                        reason,
                        message: msg,
                    });
                }
            }
            if records.is_empty() {
                continue;
            }
            self.stats.records.fetch_add(records.len() as u64, Relaxed);
            let out = std::mem::replace(&mut records, Vec::with_capacity(CHUNK));
            deliver(&self.sinks, &self.stats.name, out).await;
        }
        info!(pipeline = %self.stats.name, messages = self.stats.messages.load(Relaxed), "pipeline stopped");
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

/// Builds the ingest from the pipelines' filters and mailboxes.
pub fn ingest(routes: Vec<(Vec<String>, mpsc::Sender<Message>)>, stats: Arc<Stats>) -> Ingest {
    Ingest { routes: routes.into_iter().map(|(filters, tx)| Route { filters, tx }).collect(), stats }
}
