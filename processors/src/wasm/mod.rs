//! User processors as sandboxed WebAssembly components.
//!
//! - [`Runtime`]: the wasmtime engine and linker, with the [`Limits`] every call runs under.
//! - [`Module`] / [`Instance`]: one uploaded version, compiled and linked; one instance per worker.
//! - [`Registry`]: the versions on disk (`<data_dir>/processors`), upload, rollback, delete, and
//!   the slot each pipeline follows for hot swaps.
//! - [`WasmProcessor`]: the [`crate::Processor`] a pipeline's worker runs.
//! - `state`: what each store holds beside its instance (the memory limiter, the CPU budget of
//!   the call, the module's log), shared by `host` and `wasi`.

mod host;
mod processor;
mod registry;
mod state;
mod stats;
mod wasi;

pub use host::{Instance, Limits, Module, Runtime};
pub use processor::WasmProcessor;
pub use registry::{
    check_name, record_json, ProcessorInfo, Registry, RegistryError, SampleResult, Slot, Uploaded,
    VersionInfo, VersionStatus,
};
pub use stats::{CallStats, CallSummary, FAILING_AFTER};

use thiserror::Error;

/// The version of the `roost:processor` WIT package this host implements.
pub const WIT_VERSION: &str = "0.1.0";

mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugins-wasm/wit",
        world: "processor",
    });
}

/// Why a `.wasm` file is not accepted as a processor.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2 (cargo build \
         --target wasm32-wasip2) or with componentize-py, against plugins-wasm/wit"
    )]
    CoreModule,
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("built against roost:processor@{0}; this Roost runs roost:processor@0.1.x (WIT {WIT_VERSION})")]
    UnsupportedVersion(String),
    #[error("refused: the module {0}")]
    ForbiddenImport(String),
    #[error("does not implement the world roost:processor/processor@0.1: {0}")]
    WrongWorld(String),
    #[error("the WebAssembly engine failed: {0}")]
    Engine(String),
}

/// Why a module failed a call.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ModuleError {
    /// `process` returned an error: the module refused the message. The instance stays.
    #[error("{0}")]
    Refused(String),
    /// `init` returned an error.
    #[error("init refused the config: {0}")]
    Init(String),
    /// A trap or a broken limit (CPU, memory); the instance is replaced.
    #[error("{0}")]
    Trap(String),
    /// The output broke the cap.
    #[error("output over the cap: {0}")]
    Output(String),
}
