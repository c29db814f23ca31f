//! [`WasmProcessor`]: a pipeline worker's view of one processor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_core::{Message, Record};

use super::host::{Instance, Module};
use super::registry::Slot;
use super::ModuleError;
use crate::{ProcessError, Processor};

/// Longest wait before an instance that would not start is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Which version a pipeline runs.
#[derive(Clone)]
pub enum Source {
    /// The active version, swapped in at upload and rollback.
    Follow(Arc<Slot>),
    /// One version, pinned in the pipeline's config.
    Pinned(Arc<Module>),
}

/// Runs a processor module on one worker thread: one instance, reused across messages,
/// replaced after a trap, and re-created when a new version becomes active.
pub struct WasmProcessor {
    name: String,
    source: Source,
    config: String,
    instance: Option<Instance>,
    /// The slot generation the instance belongs to.
    generation: u64,
    /// After an instance would not start: when to try again, and why it failed.
    broken: Option<Broken>,
}

struct Broken {
    module: Arc<Module>,
    retry_at: Instant,
    backoff: Duration,
    reason: String,
}

impl WasmProcessor {
    /// A processor following the active version of `slot`.
    pub fn following(slot: Arc<Slot>, config: &str) -> Self {
        Self::new(slot.name().to_string(), Source::Follow(slot), config)
    }

    /// A processor pinned to one version.
    pub fn pinned(module: Arc<Module>, config: &str) -> Self {
        Self::new(format!("{} v{}", module.name, module.version), Source::Pinned(module), config)
    }

    fn new(name: String, source: Source, config: &str) -> Self {
        WasmProcessor {
            name,
            source,
            config: config.to_string(),
            instance: None,
            generation: 0,
            broken: None,
        }
    }

    /// The module version to run now.
    fn module(&mut self) -> Result<Arc<Module>, ProcessError> {
        match &self.source {
            Source::Pinned(module) => Ok(module.clone()),
            Source::Follow(slot) => {
                let (generation, module) = slot.current();
                if generation != self.generation {
                    // A new version: messages from now on use it.
                    self.generation = generation;
                    self.instance = None;
                    self.broken = None;
                }
                module.ok_or_else(|| ProcessError::NotLoaded(slot.name().to_string()))
            }
        }
    }

    /// Whether the instance can take the next message as is: it exists and no other version
    /// became active since it started (one atomic load, no lock).
    fn current(&self) -> bool {
        match &self.source {
            _ if self.instance.is_none() => false,
            Source::Pinned(_) => true,
            Source::Follow(slot) => slot.generation() == self.generation,
        }
    }

    fn instance(&mut self) -> Result<&mut Instance, ProcessError> {
        if self.current() {
            return Ok(self.instance.as_mut().expect("checked by current()"));
        }
        let module = self.module()?;
        if self.instance.is_none() {
            if let Some(b) = &self.broken {
                if Instant::now() < b.retry_at {
                    b.module.stats.failed();
                    return Err(failed(&b.module, format!("cannot start: {} (retried later)", b.reason)));
                }
            }
            match module.instantiate(&self.config) {
                Ok(instance) => {
                    self.broken = None;
                    self.instance = Some(instance);
                }
                Err(e) => {
                    module.stats.failed();
                    let backoff = self
                        .broken
                        .as_ref()
                        .map_or(Duration::from_secs(1), |b| (b.backoff * 2).min(MAX_BACKOFF));
                    let reason = e.to_string();
                    self.broken = Some(Broken {
                        module: module.clone(),
                        retry_at: Instant::now() + backoff,
                        backoff,
                        reason: reason.clone(),
                    });
                    return Err(failed(&module, format!("cannot start: {reason}")));
                }
            }
        }
        Ok(self.instance.as_mut().expect("set above"))
    }
}

fn failed(module: &Module, reason: String) -> ProcessError {
    ProcessError::Module { module: module.name.clone(), version: module.version, reason }
}

impl Processor for WasmProcessor {
    fn name(&self) -> &str {
        &self.name
    }

    fn process(&mut self, msg: &Message, out: &mut Vec<Record>) -> Result<(), ProcessError> {
        let instance = self.instance()?;
        let before = out.len();
        match instance.process(msg, out) {
            Ok(()) => Ok(()),
            Err(e) => {
                out.truncate(before);
                let module = instance.module().clone();
                if !matches!(e, ModuleError::Refused(_)) {
                    // A trap, or a result wasmtime stopped copying, leaves the instance in an
                    // unknown state: the next message gets a fresh one.
                    self.instance = None;
                }
                Err(failed(&module, e.to_string()))
            }
        }
    }
}
