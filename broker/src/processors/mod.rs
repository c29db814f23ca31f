//! User processors in the server: the registry of uploaded versions (in `roost-processors`),
//! which pipelines use which processor, the admin API (`api`) and the CLI (`cli`).

pub mod api;
pub mod cli;

use std::sync::Arc;

use anyhow::{Context, Result};
use roost_processors::pool::{Factory, WorkerPool};
use roost_processors::wasm::{Registry, Runtime, WasmProcessor};

use crate::config::{PipelineSettings, ProcessorSettings};

/// The directory under the data dir that holds the processor store.
pub const DIR: &str = "processors";

/// A pipeline that runs a processor.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorUse {
    pub pipeline: String,
    pub processor: String,
    /// The version it pins; none: it follows the active version.
    pub version: Option<u32>,
    /// The config its processor's `init` gets.
    pub config: String,
}

/// The registry and who uses what.
pub struct Processors {
    pub registry: Arc<Registry>,
    pub settings: ProcessorSettings,
    /// Each pipeline that runs a processor.
    pub users: Vec<ProcessorUse>,
}

impl Processors {
    /// Opens the store under `data_dir` and loads every active version.
    pub fn open(
        data_dir: &std::path::Path,
        settings: &ProcessorSettings,
        pipelines: &[PipelineSettings],
    ) -> Result<Processors> {
        let runtime = Runtime::new(settings.limits()).context("starting the WebAssembly runtime")?;
        let dir = data_dir.join(DIR);
        let registry = Registry::open(&dir, runtime)
            .with_context(|| format!("opening the processor store {}", dir.display()))?;
        let users = pipelines
            .iter()
            .filter_map(|p| {
                let r = p.processor.as_ref()?;
                Some(ProcessorUse {
                    pipeline: p.name.clone(),
                    processor: r.name().to_string(),
                    version: r.version(),
                    config: r.config().to_string(),
                })
            })
            .collect();
        Ok(Processors { registry: Arc::new(registry), settings: settings.clone(), users })
    }

    fn user(&self, pipeline: &str) -> Option<&ProcessorUse> {
        self.users.iter().find(|u| u.pipeline == pipeline)
    }

    /// The worker pool for a pipeline's processor. A pinned version must exist; a followed
    /// name may be uploaded later (until then its messages go to the dead-letter store).
    pub fn pool(&self, pipeline: &str) -> Result<Option<WorkerPool>> {
        let Some(ProcessorUse { processor: name, version, config, .. }) = self.user(pipeline) else {
            return Ok(None);
        };
        let config = config.clone();
        let factory: Factory = match version {
            None => {
                let slot = self.registry.slot(name);
                Arc::new(move || Box::new(WasmProcessor::following(slot.clone(), &config)))
            }
            Some(v) => {
                let module = self
                    .registry
                    .module(name, *v)
                    .with_context(|| format!("pipeline {pipeline:?} pins processor {name} version {v}"))?;
                Arc::new(move || Box::new(WasmProcessor::pinned(module.clone(), &config)))
            }
        };
        let pool = WorkerPool::new(pipeline, self.settings.workers, factory)
            .with_context(|| format!("starting the processor workers of pipeline {pipeline:?}"))?;
        Ok(Some(pool))
    }

    /// What `pipeline` runs, for the status: `name`, or `name@version` when pinned.
    pub fn label(&self, pipeline: &str) -> Option<String> {
        let ProcessorUse { processor: name, version, .. } = self.user(pipeline)?;
        Some(match version {
            Some(v) => format!("{name}@{v}"),
            None => name.clone(),
        })
    }

    /// The pipelines that name `processor`.
    pub fn pipelines_using(&self, processor: &str) -> Vec<String> {
        self.users.iter().filter(|u| u.processor == processor).map(|u| u.pipeline.clone()).collect()
    }

    /// The `init` configs a new version of `processor` must accept: those of the pipelines that
    /// follow it (an empty config when none does).
    pub fn configs_for(&self, processor: &str) -> Vec<String> {
        let mut configs: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.processor == processor && u.version.is_none())
            .map(|u| u.config.clone())
            .collect();
        configs.dedup();
        if configs.is_empty() {
            configs.push(String::new());
        }
        configs
    }
}
