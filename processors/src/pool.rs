//! Worker threads for processors: CPU-bound work (WebAssembly above all) runs here, never on
//! the async threads that serve MQTT and HTTP.
//!
//! Each worker owns its own processor (made by the pool's factory on that thread), so a
//! WebAssembly store and instance belong to one thread and are reused across messages.

use std::sync::Arc;

use roost_core::{Message, Record};
use tokio::sync::oneshot;

use crate::{ProcessError, Processor};

/// Makes one processor per worker.
pub type Factory = Arc<dyn Fn() -> Box<dyn Processor> + Send + Sync>;

/// What a batch of messages became.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records of the messages that succeeded, in message order.
    pub records: Vec<Record>,
    /// The messages that failed, with why.
    pub failed: Vec<(Message, ProcessError)>,
    /// Messages processed (succeeded or not).
    pub messages: usize,
}

struct Job {
    messages: Vec<Message>,
    reply: oneshot::Sender<Processed>,
}

/// A fixed set of worker threads sharing one job queue. Clones share the workers.
#[derive(Clone)]
pub struct WorkerPool {
    jobs: crossbeam_channel::Sender<Job>,
    workers: usize,
}

/// The pool's workers are gone (a processor panicked in every one of them).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the processor workers have stopped")]
pub struct PoolStopped;

impl WorkerPool {
    /// Starts `workers` threads named after `name`. They stop when the pool is dropped and the
    /// queued jobs are done.
    pub fn new(name: &str, workers: usize, factory: Factory) -> std::io::Result<WorkerPool> {
        let workers = workers.max(1);
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(workers * 2);
        for i in 0..workers {
            let (queue, factory) = (queue.clone(), factory.clone());
            std::thread::Builder::new().name(format!("proc-{name}-{i}")).spawn(move || {
                let mut processor = factory();
                for job in queue {
                    let _ = job.reply.send(run(&mut processor, job.messages, Some(&factory)));
                }
            })?;
        }
        Ok(WorkerPool { jobs, workers })
    }

    /// How many batches can usefully be in flight.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Processes a batch on a worker thread.
    pub async fn process(&self, messages: Vec<Message>) -> Result<Processed, PoolStopped> {
        let (reply, done) = oneshot::channel();
        // The queue is bounded; a pipeline keeps at most `workers` batches in flight, so it is
        // never full unless several pipelines share the pool: then wait off the async threads.
        match self.jobs.try_send(Job { messages, reply }) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(job)) => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || jobs.send(job))
                    .await
                    .map_err(|_| PoolStopped)?
                    .map_err(|_| PoolStopped)?;
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(PoolStopped),
        }
        done.await.map_err(|_| PoolStopped)
    }
}

/// Runs `processor` over `messages`: what a worker does with one job; also used inline. A
/// panic in a processor fails only its message; with a `factory` the processor is replaced.
pub fn run(
    processor: &mut Box<dyn Processor>,
    messages: Vec<Message>,
    factory: Option<&Factory>,
) -> Processed {
    let mut out = Processed { messages: messages.len(), ..Processed::default() };
    for msg in messages {
        let before = out.records.len();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            processor.process(&msg, &mut out.records)
        }));
        let error = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => {
                if let Some(factory) = factory {
                    *processor = factory();
                }
                ProcessError::Panicked(processor.name().to_string())
            }
        };
        out.records.truncate(before);
        out.failed.push((msg, error));
    }
    out
}
