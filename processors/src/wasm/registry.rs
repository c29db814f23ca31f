//! The processor store: every uploaded version on disk, the active one per name, hot swap.
//!
//! Layout under `<data_dir>/processors/<name>/`: `meta.json` (versions and the active one),
//! `<version>.wasm` (the upload, as sent) and `<version>.cwasm` (its compiled form, so a restart
//! does not recompile). `meta.json` is replaced atomically (write, fsync, rename).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};

use roost_core::{ident, FieldValue, Message, Record};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{info, warn};
use wasmtime::component::Component;

use super::host::{Module, Runtime};
use super::stats::CallSummary;
use super::{LoadError, ModuleError};

/// Why a registry call failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("invalid processor name {name:?}: {why}")]
    BadName { name: String, why: String },
    #[error("no processor named {0}")]
    NotFound(String),
    #[error("processor {name} has no version {version}")]
    NoVersion { name: String, version: u32 },
    #[error("processor {0} has no earlier version to roll back to")]
    NoEarlier(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("init failed with config {config:?}: {error}")]
    Init { config: String, error: ModuleError },
    #[error("{failed} of {total} sample messages failed")]
    Samples { failed: usize, total: usize, results: Vec<SampleResult> },
    #[error("processor store {path}: {error}")]
    Io { path: String, error: String },
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub uploaded_at: String,
}

/// A processor as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorInfo {
    pub name: String,
    pub active: Option<u32>,
    pub versions: Vec<VersionStatus>,
}

/// A version with its call statistics (zero until it ran in this process).
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub active: bool,
    #[serde(flatten)]
    pub calls: CallSummary,
}

/// What a sample message became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleResult {
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A successful upload.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    pub samples: Vec<SampleResult>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    active: Option<u32>,
    versions: Vec<VersionInfo>,
}

/// The version a pipeline following a processor runs now. Pipelines' workers check the
/// generation before each message: a swap takes effect at the next message, while a message
/// already in a worker finishes on the version it started with.
pub struct Slot {
    name: String,
    current: RwLock<(u64, Option<Arc<Module>>)>,
    generation: AtomicU64,
}

impl Slot {
    fn new(name: &str) -> Arc<Slot> {
        Arc::new(Slot {
            name: name.to_string(),
            current: RwLock::new((0, None)),
            generation: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Changes with every swap; cheap to read before each message.
    pub fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    /// The generation and module in force now.
    pub fn current(&self) -> (u64, Option<Arc<Module>>) {
        let current = self.current.read().expect("slot lock");
        (current.0, current.1.clone())
    }

    fn set(&self, module: Option<Arc<Module>>) {
        // The generation moves while the lock is held: a reader that sees the new one then
        // waits for the lock and reads the new module.
        let mut current = self.current.write().expect("slot lock");
        let generation = self.generation.fetch_add(1, SeqCst) + 1;
        *current = (generation, module);
    }
}

struct Entry {
    meta: Meta,
    slot: Arc<Slot>,
    loaded: HashMap<u32, Arc<Module>>,
}

/// Every processor and version.
pub struct Registry {
    dir: PathBuf,
    runtime: Arc<Runtime>,
    entries: Mutex<HashMap<String, Entry>>,
    /// One upload, rollback or delete at a time (compiling can take seconds; lookups go on).
    writes: Mutex<()>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Io { path: path.display().to_string(), error: e.to_string() }
}

/// Checks a processor name (it names a directory, URLs and metric labels): 1 to 63 ASCII
/// letters, digits, `-` and `_`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    let bad = |why: &str| RegistryError::BadName { name: name.chars().take(80).collect(), why: why.into() };
    if name.is_empty() || name.len() > ident::MAX_IDENT_LEN {
        return Err(bad("use 1 to 63 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad("start with a letter"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("use ASCII letters, digits, '-' and '_'"));
    }
    Ok(())
}

impl Registry {
    /// Opens (or creates) the store in `dir` and loads every active version, from its compiled
    /// form when that is still valid for this build, else by compiling the stored `.wasm`.
    pub fn open(dir: &Path, runtime: Arc<Runtime>) -> Result<Registry, RegistryError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let registry = Registry {
            dir: dir.to_path_buf(),
            runtime,
            entries: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
        };
        let listing = fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
        for item in listing {
            let item = item.map_err(|e| io_err(dir, e))?;
            let Some(name) = item.file_name().to_str().map(str::to_string) else { continue };
            if check_name(&name).is_err() || !item.path().join("meta.json").exists() {
                continue;
            }
            let meta_path = item.path().join("meta.json");
            let text = fs::read_to_string(&meta_path).map_err(|e| io_err(&meta_path, e))?;
            let meta: Meta = serde_json::from_str(&text).map_err(|e| io_err(&meta_path, e))?;
            let active = meta.active;
            let mut entry = Entry { meta, slot: Slot::new(&name), loaded: HashMap::new() };
            if let Some(version) = active {
                let module = registry.load(&name, version)?;
                entry.slot.set(Some(module.clone()));
                entry.loaded.insert(version, module);
                info!(processor = %name, version, "processor loaded");
            }
            registry.entries.lock().expect("registry lock").insert(name, entry);
        }
        Ok(registry)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    fn path(&self, name: &str, version: u32, ext: &str) -> PathBuf {
        self.dir.join(name).join(format!("{version}.{ext}"))
    }

    /// Loads one stored version from disk.
    fn load(&self, name: &str, version: u32) -> Result<Arc<Module>, RegistryError> {
        let compiled = self.path(name, version, "cwasm");
        let component = match self.runtime.deserialize_file(&compiled) {
            Ok(component) => component,
            Err(e) => {
                if compiled.exists() {
                    warn!(processor = name, version, error = %e, "compiled module not usable by this build; recompiling");
                }
                let source = self.path(name, version, "wasm");
                let bytes = fs::read(&source).map_err(|e| io_err(&source, e))?;
                let component = self.runtime.compile(&bytes)?;
                self.write_compiled(&compiled, &component);
                component
            }
        };
        Ok(self.runtime.link(&component, name, version)?)
    }

    fn write_compiled(&self, path: &Path, component: &Component) {
        let written = self
            .runtime
            .serialize(component)
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomic(path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "cannot cache the compiled module; it is compiled again at the next start");
        }
    }

    /// The slot a pipeline following `name` reads; empty until a version is uploaded.
    pub fn slot(&self, name: &str) -> Arc<Slot> {
        let mut entries = self.entries.lock().expect("registry lock");
        entries
            .entry(name.to_string())
            .or_insert_with(|| Entry { meta: Meta::default(), slot: Slot::new(name), loaded: HashMap::new() })
            .slot
            .clone()
    }

    /// One version, for a pipeline pinned to it.
    pub fn module(&self, name: &str, version: u32) -> Result<Arc<Module>, RegistryError> {
        {
            let entries = self.entries.lock().expect("registry lock");
            let entry = entries
                .get(name)
                .filter(|e| !e.meta.versions.is_empty())
                .ok_or_else(|| RegistryError::NotFound(name.into()))?;
            if let Some(module) = entry.loaded.get(&version) {
                return Ok(module.clone());
            }
            if !entry.meta.versions.iter().any(|v| v.version == version) {
                return Err(RegistryError::NoVersion { name: name.into(), version });
            }
        }
        let module = self.load(name, version)?;
        let mut entries = self.entries.lock().expect("registry lock");
        if let Some(entry) = entries.get_mut(name) {
            entry.loaded.insert(version, module.clone());
        }
        Ok(module)
    }

    /// Checks a module without storing it: compiles it, checks its world and imports, runs
    /// `init` with each config, then runs the samples (with the first config).
    pub fn check(
        &self,
        name: &str,
        bytes: &[u8],
        configs: &[String],
        samples: &[Message],
    ) -> Result<(Component, Vec<SampleResult>), RegistryError> {
        check_name(name)?;
        let component = self.runtime.compile(bytes)?;
        let module = self.runtime.link(&component, name, 0)?;
        let results = run_samples(&module, configs, samples)?;
        Ok((component, results))
    }

    /// Runs samples through a stored version (the active one when `version` is `None`).
    pub fn test(
        &self,
        name: &str,
        version: Option<u32>,
        configs: &[String],
        samples: &[Message],
    ) -> Result<Vec<SampleResult>, RegistryError> {
        let version = match version {
            Some(v) => v,
            None => {
                let entries = self.entries.lock().expect("registry lock");
                entries
                    .get(name)
                    .and_then(|e| e.meta.active)
                    .ok_or_else(|| RegistryError::NotFound(name.into()))?
            }
        };
        let module = self.module(name, version)?;
        run_samples(&module, configs, samples)
    }

    /// Checks a module (see [`Registry::check`]) and, when it passes, stores it as the next
    /// version and makes it active.
    pub fn upload(
        &self,
        name: &str,
        bytes: &[u8],
        configs: &[String],
        samples: &[Message],
    ) -> Result<Uploaded, RegistryError> {
        let _write = self.writes.lock().expect("registry write lock");
        let (component, results) = self.check(name, bytes, configs, samples)?;
        let version = {
            let entries = self.entries.lock().expect("registry lock");
            entries.get(name).and_then(|e| e.meta.versions.iter().map(|v| v.version).max()).unwrap_or(0) + 1
        };
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let source = self.path(name, version, "wasm");
        write_atomic(&source, bytes).map_err(|e| io_err(&source, e))?;
        self.write_compiled(&self.path(name, version, "cwasm"), &component);
        let module = self.runtime.link(&component, name, version)?;
        let info = VersionInfo {
            version,
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            uploaded_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let mut entries = self.entries.lock().expect("registry lock");
        let entry = entries.entry(name.to_string()).or_insert_with(|| Entry {
            meta: Meta::default(),
            slot: Slot::new(name),
            loaded: HashMap::new(),
        });
        entry.meta.versions.push(info.clone());
        entry.meta.active = Some(version);
        self.save_meta(name, &entry.meta)?;
        entry.loaded.insert(version, module.clone());
        entry.slot.set(Some(module));
        info!(processor = name, version, sha256 = %info.sha256, size = info.size, "processor uploaded and active");
        Ok(Uploaded {
            name: name.to_string(),
            version,
            sha256: info.sha256,
            size: info.size,
            samples: results,
        })
    }

    /// Makes `to` (or the version before the active one) active.
    pub fn rollback(&self, name: &str, to: Option<u32>) -> Result<u32, RegistryError> {
        let _write = self.writes.lock().expect("registry write lock");
        let (target, cached) = {
            let entries = self.entries.lock().expect("registry lock");
            let entry = entries
                .get(name)
                .filter(|e| !e.meta.versions.is_empty())
                .ok_or_else(|| RegistryError::NotFound(name.into()))?;
            let target = match to {
                Some(v) if entry.meta.versions.iter().any(|i| i.version == v) => v,
                Some(v) => return Err(RegistryError::NoVersion { name: name.into(), version: v }),
                None => {
                    let active = entry.meta.active.unwrap_or(u32::MAX);
                    entry
                        .meta
                        .versions
                        .iter()
                        .map(|v| v.version)
                        .filter(|&v| v < active)
                        .max()
                        .ok_or_else(|| RegistryError::NoEarlier(name.into()))?
                }
            };
            (target, entry.loaded.get(&target).cloned())
        };
        let module = match cached {
            Some(m) => m,
            None => self.load(name, target)?,
        };
        let mut entries = self.entries.lock().expect("registry lock");
        let entry = entries.get_mut(name).ok_or_else(|| RegistryError::NotFound(name.into()))?;
        entry.meta.active = Some(target);
        self.save_meta(name, &entry.meta)?;
        entry.loaded.insert(target, module.clone());
        entry.slot.set(Some(module));
        info!(processor = name, version = target, "processor rolled back");
        Ok(target)
    }

    /// Deletes every version. The caller checks that no pipeline uses it. Pipelines that
    /// follow the name afterwards fail their messages into the dead-letter store.
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        let _write = self.writes.lock().expect("registry write lock");
        let mut entries = self.entries.lock().expect("registry lock");
        let entry = entries
            .get_mut(name)
            .filter(|e| !e.meta.versions.is_empty())
            .ok_or_else(|| RegistryError::NotFound(name.into()))?;
        let dir = self.dir.join(name);
        fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        entry.meta = Meta::default();
        entry.loaded.clear();
        entry.slot.set(None);
        info!(processor = name, "processor deleted");
        Ok(())
    }

    /// Every processor with stored versions.
    pub fn list(&self) -> Vec<ProcessorInfo> {
        let entries = self.entries.lock().expect("registry lock");
        let mut out: Vec<ProcessorInfo> = entries
            .iter()
            .filter(|(_, e)| !e.meta.versions.is_empty())
            .map(|(name, e)| describe(name, e))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn info(&self, name: &str) -> Result<ProcessorInfo, RegistryError> {
        let entries = self.entries.lock().expect("registry lock");
        let entry = entries
            .get(name)
            .filter(|e| !e.meta.versions.is_empty())
            .ok_or_else(|| RegistryError::NotFound(name.into()))?;
        Ok(describe(name, entry))
    }

    fn save_meta(&self, name: &str, meta: &Meta) -> Result<(), RegistryError> {
        let path = self.dir.join(name).join("meta.json");
        let text = serde_json::to_vec_pretty(meta).map_err(|e| io_err(&path, e))?;
        write_atomic(&path, &text).map_err(|e| io_err(&path, e))
    }
}

fn describe(name: &str, entry: &Entry) -> ProcessorInfo {
    let versions = entry
        .meta
        .versions
        .iter()
        .map(|info| VersionStatus {
            info: info.clone(),
            active: entry.meta.active == Some(info.version),
            calls: entry.loaded.get(&info.version).map(|m| m.stats.summary()).unwrap_or_default(),
        })
        .collect();
    ProcessorInfo { name: name.to_string(), active: entry.meta.active, versions }
}

fn run_samples(
    module: &Arc<Module>,
    configs: &[String],
    samples: &[Message],
) -> Result<Vec<SampleResult>, RegistryError> {
    let default = [String::new()];
    let configs = if configs.is_empty() { &default[..] } else { configs };
    let mut instances = Vec::new();
    for config in configs {
        let instance = module
            .instantiate(config)
            .map_err(|error| RegistryError::Init { config: config.clone(), error })?;
        instances.push(instance);
    }
    let mut instance = instances.swap_remove(0);
    let mut results = Vec::with_capacity(samples.len());
    for msg in samples {
        let mut records = Vec::new();
        let result = match instance.process(msg, &mut records) {
            Ok(()) => SampleResult {
                topic: msg.topic.clone(),
                records: Some(records.iter().map(record_json).collect()),
                error: None,
            },
            Err(e) => {
                if !matches!(e, ModuleError::Refused(_)) {
                    instance = module
                        .instantiate(&configs[0])
                        .map_err(|error| RegistryError::Init { config: configs[0].clone(), error })?;
                }
                SampleResult { topic: msg.topic.clone(), records: None, error: Some(e.to_string()) }
            }
        };
        results.push(result);
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(RegistryError::Samples { failed, total: results.len(), results });
    }
    Ok(results)
}

/// A record as JSON, for sample results.
pub fn record_json(r: &Record) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = r
        .fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                FieldValue::Int(i) => (*i).into(),
                FieldValue::Float(f) => (*f).into(),
                FieldValue::Bool(b) => (*b).into(),
                FieldValue::Str(s) => s.clone().into(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_json::json!({
        "measurement": r.measurement,
        "time": r.time,
        "device": r.device,
        "tags": r.tags,
        "fields": fields,
    })
}

/// Replaces `path` with `bytes`: a temporary file in the same directory, synced, renamed over
/// `path`, and the directory synced (`atomic-write-file`).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}
