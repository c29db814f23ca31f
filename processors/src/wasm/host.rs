//! The wasmtime side: one engine and linker for all modules, a [`Module`] per uploaded version
//! (compiled and linked once), an [`Instance`] per worker thread per module, reused across
//! messages, with a CPU budget, a memory cap and an output cap on every call.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_core::{FieldValue as CoreValue, Message as CoreMessage, Record as CoreRecord};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};

use super::bindings::roost::processor::types::{FieldValue, Message, Record};
use super::bindings::{Processor as Bindings, ProcessorPre};
use super::state::HostState;
use super::stats::CallStats;
use super::{wasi, LoadError, ModuleError};

/// How often the engine's epoch advances: the CPU budget's resolution.
const TICK: Duration = Duration::from_millis(1);

/// The limits every call runs under.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// CPU time per `process` call: the worker thread's own, measured once the call has run
    /// this long in wall time (so an endless loop stops after one to two budgets).
    pub cpu_budget: Duration,
    /// Budget for starting an instance and running `init` (a Python module unpacks its
    /// interpreter then).
    pub init_budget: Duration,
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Records one message may produce.
    pub max_records: usize,
    /// Bytes (names, tags and values) one message may produce.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_budget: Duration::from_millis(10),
            init_budget: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            max_records: 10_000,
            max_output_bytes: 4 << 20,
        }
    }
}

/// The engine, the linker and the limits, shared by every module.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Relaxed);
    }
}

impl Runtime {
    pub fn new(limits: Limits) -> Result<Arc<Runtime>, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        Bindings::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .and_then(|()| wasi::add_to_linker(&mut linker))
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop.load(Relaxed) {
                    std::thread::sleep(TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Arc::new(Runtime { engine, linker, limits, stop_ticker }))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks and compiles `bytes`: a WebAssembly component implementing
    /// `roost:processor/processor@0.1.x`, importing nothing the host refuses.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm);
        }
        // Bytes 4..8: a core module has version 1, a component layer 1 with version 0x0d.
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(LoadError::CoreModule);
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.check_world(&component)?;
        Ok(component)
    }

    /// The compiled form of `component`, to cache on disk.
    pub fn serialize(&self, component: &Component) -> Result<Vec<u8>, LoadError> {
        component.serialize().map_err(|e| LoadError::Engine(format!("{e:#}")))
    }

    /// Loads a component compiled earlier by [`Runtime::serialize`] (in this data directory).
    /// Fails, and the caller recompiles, when the file was made by another Roost build.
    ///
    /// The file must be one Roost wrote itself: wasmtime runs the machine code in it as is.
    #[allow(unsafe_code)]
    pub fn deserialize_file(&self, path: &std::path::Path) -> Result<Component, LoadError> {
        // SAFETY: the file is written only by `serialize` into Roost's own data directory (not
        // reachable over the API), and wasmtime checks it was produced by this engine version
        // and configuration before using it.
        let component = unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        self.check_world(&component)?;
        Ok(component)
    }

    fn check_world(&self, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            if let Some(version) = name.strip_prefix("roost:processor/").and_then(|n| n.split_once('@')) {
                let supported = version.1.starts_with("0.1.");
                if !supported {
                    return Err(LoadError::UnsupportedVersion(version.1.to_string()));
                }
            }
            if let Some(why) = wasi::refused_import(name) {
                return Err(LoadError::ForbiddenImport(why));
            }
        }
        Ok(())
    }

    /// Links a checked component: a module version ready to instantiate.
    pub fn link(&self, component: &Component, name: &str, version: u32) -> Result<Arc<Module>, LoadError> {
        let mut linker = self.linker.clone();
        // Imports from the provided WASI interfaces that the host leaves out (terminals,
        // pollables) trap if they are ever called.
        linker.define_unknown_imports_as_traps(component).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(ProcessorPre::new)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        Ok(Arc::new(Module {
            name: name.to_string(),
            version,
            pre,
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            stats: CallStats::default(),
        }))
    }
}

/// One version of one processor, compiled and linked.
pub struct Module {
    pub name: String,
    pub version: u32,
    pre: ProcessorPre<HostState>,
    engine: Engine,
    limits: Limits,
    pub stats: CallStats,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Module({} v{})", self.name, self.version)
    }
}

impl Module {
    /// A fresh instance, with `init(config)` run.
    pub fn instantiate(self: &Arc<Self>, config: &str) -> Result<Instance, ModuleError> {
        let state = HostState::new(&self.name, self.version, self.limits.memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        // The epoch deadline is wall-clock and costs nothing per call. When a call is still
        // running after its budget of wall time, the thread's CPU clock is read (a system call,
        // too dear for every call) and the call is stopped once it has used its budget of CPU
        // time from then on: a worker merely descheduled on a busy machine is not charged for
        // the wait, and an endless loop stops after one to two budgets.
        store.epoch_deadline_callback(|mut ctx| {
            let now = thread_cpu_time();
            let state = ctx.data_mut();
            let since = *state.cpu_checked.get_or_insert(now);
            Ok(match state.cpu_budget.checked_sub(now.saturating_sub(since)) {
                Some(left) if !left.is_zero() => UpdateDeadline::Continue(ticks(left)),
                _ => UpdateDeadline::Interrupt,
            })
        });
        // wasmtime's own bound on what one call may copy out of the guest, set explicitly: it
        // stops the host from allocating without bound before the output cap below is checked.
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        begin_call(&mut store, self.limits.init_budget);
        let bindings =
            self.pre.instantiate(&mut store).map_err(|e| self.trap(&mut store, "instantiate", e))?;
        match bindings.call_init(&mut store, config) {
            Ok(Ok(())) => Ok(Instance { module: self.clone(), store, bindings }),
            Ok(Err(why)) => Err(ModuleError::Init(why)),
            Err(e) => Err(self.trap(&mut store, "init", e)),
        }
    }

    /// Describes a failed call: which limit broke, and the last line the module wrote to stderr
    /// (a Rust panic message, a Python traceback line).
    fn trap(&self, store: &mut Store<HostState>, call: &str, e: wasmtime::Error) -> ModuleError {
        let state = store.data_mut();
        let stderr = state.take_stderr_tail();
        let what = match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                let budget = if call == "process" { self.limits.cpu_budget } else { self.limits.init_budget };
                format!("{call} ran past its CPU budget of {budget:?}")
            }
            _ if state.memory_refused => {
                format!("{call} tried to grow memory past the cap of {} MiB", self.limits.memory_bytes >> 20)
            }
            Some(trap) => format!("{call} trapped: {trap}"),
            None => format!("{call} failed: {e:#}"),
        };
        let what = match stderr {
            Some(line) => format!("{what} (stderr: {line})"),
            None => what,
        };
        ModuleError::Trap(what)
    }
}

/// A module's instance on one worker thread, reused across messages.
pub struct Instance {
    module: Arc<Module>,
    store: Store<HostState>,
    bindings: Bindings,
}

impl Instance {
    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// Runs `process` on one message and appends its records to `out`. On an error the instance
    /// must be dropped (a trap leaves it in an unknown state), except for [`ModuleError::Refused`].
    pub fn process(&mut self, msg: &CoreMessage, out: &mut Vec<CoreRecord>) -> Result<(), ModuleError> {
        let started = Instant::now();
        let result = self.call(msg, out);
        self.module.stats.observe(started.elapsed(), result.is_ok());
        result
    }

    fn call(&mut self, msg: &CoreMessage, out: &mut Vec<CoreRecord>) -> Result<(), ModuleError> {
        let module = &self.module;
        let message = Message {
            topic: msg.topic.clone(),
            client_id: msg.client_id.clone(),
            device: msg.device.clone(),
            payload: msg.payload.to_vec(),
            received_at: msg.received_at,
            qos: msg.qos,
            retain: msg.retain,
            user_properties: msg.user_properties.clone(),
        };
        let limits = &module.limits;
        self.store.data_mut().new_call();
        begin_call(&mut self.store, limits.cpu_budget);
        let records = match self.bindings.call_process(&mut self.store, &message) {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => return Err(ModuleError::Refused(e.message)),
            Err(e) if format!("{e:#}").contains("too much data is being copied") => {
                return Err(ModuleError::Output(format!("more than {HOSTCALL_FUEL} bytes for one message")))
            }
            Err(e) => return Err(module.trap(&mut self.store, "process", e)),
        };
        if records.len() > limits.max_records {
            return Err(ModuleError::Output(format!(
                "{} records for one message (the cap is {})",
                records.len(),
                limits.max_records
            )));
        }
        let bytes: usize = records.iter().map(output_bytes).sum();
        if bytes > limits.max_output_bytes {
            return Err(ModuleError::Output(format!(
                "{bytes} bytes of records for one message (the cap is {})",
                limits.max_output_bytes
            )));
        }
        out.extend(records.into_iter().map(into_core));
        Ok(())
    }
}

/// Starts the CPU budget of a call.
fn begin_call(store: &mut Store<HostState>, budget: Duration) {
    let state = store.data_mut();
    state.cpu_checked = None;
    state.cpu_budget = budget;
    store.set_epoch_deadline(ticks(budget));
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// See [`Module::instantiate`].
const HOSTCALL_FUEL: usize = 128 << 20;

/// Epoch ticks for a budget, rounded up.
fn ticks(budget: Duration) -> u64 {
    budget.as_nanos().div_ceil(TICK.as_nanos()).max(1) as u64
}

fn output_bytes(r: &Record) -> usize {
    let value = |v: &FieldValue| match v {
        FieldValue::Str(s) => s.len(),
        _ => 8,
    };
    r.measurement.len()
        + r.device.len()
        + 8
        + r.tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + r.fields.iter().map(|(k, v)| k.len() + value(v)).sum::<usize>()
}

fn into_core(r: Record) -> CoreRecord {
    CoreRecord {
        measurement: r.measurement,
        time: r.time,
        device: r.device,
        tags: r.tags.into_iter().collect(),
        fields: r
            .fields
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    FieldValue::Int(i) => CoreValue::Int(i),
                    FieldValue::Float(f) => CoreValue::Float(f),
                    FieldValue::Boolean(b) => CoreValue::Bool(b),
                    FieldValue::Str(s) => CoreValue::Str(s),
                };
                (k, v)
            })
            .collect(),
    }
}
