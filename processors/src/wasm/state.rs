//! [`HostState`]: what each wasmtime store holds besides its instance. The memory limiter (a
//! [`wasmtime::ResourceLimiter`] that remembers when it refused), the CPU budget of the current
//! call, the module's stdout and stderr turned into log lines (with a rate limit, and the last
//! stderr lines kept for the reason of a failure), and the `roost:processor/log` host functions.
//!
//! Both the engine side (`host.rs`) and the WASI definitions (`wasi.rs`) depend on
//! this file; it depends on neither.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, trace, warn};
use wasmtime::{StoreLimits, StoreLimitsBuilder};

use super::bindings::roost::processor::log::{self as log_iface, Level};
use super::bindings::roost::processor::types;

/// What a store holds besides the instance: its limits and its way to the log.
pub struct HostState {
    name: Arc<str>,
    version: u32,
    limits: StoreLimits,
    /// Whether the limiter refused to grow a memory during the current call.
    pub(super) memory_refused: bool,
    /// The thread's CPU time when the current call first ran past its budget of wall time,
    /// and the call's budget.
    pub(super) cpu_checked: Option<Duration>,
    pub(super) cpu_budget: Duration,
    /// Unfinished stdout/stderr lines.
    pending: [Vec<u8>; 2],
    /// The last stderr lines of the current call, for the reason of a failure.
    stderr_tail: std::collections::VecDeque<String>,
    log_budget: LogBudget,
}

/// Lines a module may log per second; the rest are counted and reported once a second.
const LOG_LINES_PER_SEC: u32 = 50;
/// stderr lines kept for the reason of a failed call.
const STDERR_TAIL_LINES: usize = 3;
/// Longest line logged; the rest is cut.
const LOG_LINE_BYTES: usize = 1024;

struct LogBudget {
    window: Instant,
    used: u32,
    dropped: u32,
}

impl HostState {
    /// The state of a new store for `name` version `version`, whose memories may grow to
    /// `memory_bytes` and trap when they try to grow past it.
    pub(super) fn new(name: &str, version: u32, memory_bytes: usize) -> Self {
        HostState {
            name: name.into(),
            version,
            limits: StoreLimitsBuilder::new().memory_size(memory_bytes).trap_on_grow_failure(true).build(),
            memory_refused: false,
            cpu_checked: None,
            cpu_budget: Duration::ZERO,
            pending: [Vec::new(), Vec::new()],
            stderr_tail: std::collections::VecDeque::new(),
            log_budget: LogBudget { window: Instant::now(), used: 0, dropped: 0 },
        }
    }

    /// Bytes written to stdout (1) or stderr (2): logged a line at a time.
    pub(crate) fn output(&mut self, stream: u32, bytes: &[u8]) {
        let idx = usize::from(stream == 2);
        let mut buf = std::mem::take(&mut self.pending[idx]);
        buf.extend_from_slice(bytes);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            self.line(idx == 1, &line[..line.len() - 1]);
        }
        if buf.len() > LOG_LINE_BYTES {
            let line = std::mem::take(&mut buf);
            self.line(idx == 1, &line);
        }
        self.pending[idx] = buf;
    }

    fn line(&mut self, stderr: bool, line: &[u8]) {
        let text = String::from_utf8_lossy(&line[..line.len().min(LOG_LINE_BYTES)]).into_owned();
        if text.trim().is_empty() {
            return;
        }
        // Rust's panic hint says nothing about the failure.
        if stderr && !text.starts_with("note: run with `RUST_BACKTRACE=1`") {
            if self.stderr_tail.len() == STDERR_TAIL_LINES {
                self.stderr_tail.pop_front();
            }
            self.stderr_tail.push_back(text.clone());
        }
        self.log(if stderr { Level::Warn } else { Level::Info }, text);
    }

    /// The last stderr lines of the current call, joined, including an unfinished one.
    pub(super) fn take_stderr_tail(&mut self) -> Option<String> {
        if !self.pending[1].is_empty() {
            let rest = std::mem::take(&mut self.pending[1]);
            self.line(true, &rest);
        }
        let tail: Vec<String> = self.stderr_tail.drain(..).collect();
        (!tail.is_empty()).then(|| tail.join(" | "))
    }

    /// Forgets what an earlier call wrote to stderr.
    pub(super) fn new_call(&mut self) {
        self.stderr_tail.clear();
        self.memory_refused = false;
    }

    fn log(&mut self, level: Level, message: String) {
        let budget = &mut self.log_budget;
        if budget.window.elapsed() >= Duration::from_secs(1) {
            if budget.dropped > 0 {
                warn!(processor = %self.name, version = self.version, dropped = budget.dropped,
                      "processor logged too much; lines dropped");
            }
            *budget = LogBudget { window: Instant::now(), used: 0, dropped: 0 };
        }
        if budget.used >= LOG_LINES_PER_SEC {
            budget.dropped += 1;
            return;
        }
        budget.used += 1;
        let (name, version) = (&*self.name, self.version);
        let message = &message[..message.floor_char_boundary(LOG_LINE_BYTES)];
        match level {
            Level::Trace => trace!(processor = name, version, "{message}"),
            Level::Debug => debug!(processor = name, version, "{message}"),
            Level::Info => info!(processor = name, version, "{message}"),
            Level::Warn => warn!(processor = name, version, "{message}"),
            Level::Error => error!(processor = name, version, "{message}"),
        }
    }
}

impl log_iface::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        HostState::log(self, level, message);
    }
}

impl types::Host for HostState {}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.limits.memory_growing(current, desired, maximum);
        if !matches!(ok, Ok(true)) {
            self.memory_refused = true;
        }
        ok
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}
