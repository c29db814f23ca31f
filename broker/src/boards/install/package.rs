//! What an install works with and produces: the [`Limits`] it applies, the [`LocalKind`] of a
//! local package, the [`Package`] of files for `lib/`, and the [`InstallError`] for everything
//! that can go wrong on the way.

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

/// Why a package cannot be installed.
#[derive(Debug, Error)]
pub enum InstallError {
    #[error(
        "no package index configured: set [boards] package_index (or ROOST__BOARDS__PACKAGE_INDEX) to a \"simple\" index URL (PEP 691 or PEP 503), or install a local .py, directory, .whl or .tar.gz"
    )]
    NoIndex,
    #[error("bad package spec '{0}': give NAME or NAME==VERSION")]
    BadSpec(String),
    #[error("package index: {0}")]
    Index(String),
    #[error("package '{name}' has no {what} in the index")]
    NotFound { name: String, what: String },
    #[error("{file}: SHA-256 mismatch (the index says {expected}, the download is {actual}); nothing was installed")]
    HashMismatch { file: String, expected: String, actual: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{file}: unsafe archive member '{member}': {why}")]
    Unsafe { file: String, member: String, why: &'static str },
    #[error("{file}: {why}")]
    BadArchive { file: String, why: String },
    #[error("{0}: no importable modules or packages found in it")]
    Empty(String),
}

/// Caps applied while downloading and unpacking.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_download_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub max_files: usize,
}

/// What a local package is (the CLI says; the body holds its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalKind {
    /// One `.py` module.
    Py,
    /// A directory, as a tar made by the CLI.
    Dir,
    /// A `.whl`.
    Wheel,
    /// A `.tar.gz` sdist.
    Sdist,
}

/// A package ready to send: its files, relative to `lib/`.
#[derive(Debug, Clone)]
pub struct Package {
    /// What was installed (`mypkg 1.2 (mypkg-1.2-py3-none-any.whl)`, `tool.py`).
    pub label: String,
    pub files: BTreeMap<String, Bytes>,
}

impl Package {
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|d| d.len() as u64).sum()
    }
}

impl Limits {
    /// The error for a package file larger than `max_download_bytes`.
    pub(super) fn too_big_download(&self, file: &str) -> InstallError {
        InstallError::TooLarge(format!(
            "{file} is larger than boards.max_package_bytes ({} bytes)",
            self.max_download_bytes
        ))
    }
}
