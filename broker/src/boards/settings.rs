//! `[boards]`: the board command service's settings, and the package caps `install` derives
//! from them.

use serde::{Deserialize, Serialize};

use super::install;

/// `[boards]`: the board command service's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoardSettings {
    /// When true, a board that connects for the first time is only listed by `roost board scan`
    /// until an operator approves it; it is sent nothing before. When false (the default), boards
    /// are registered on their first status.
    pub require_approval: bool,
    /// Requests one board runs at a time; the others wait in the queue.
    pub max_concurrent_per_board: usize,
    /// Deadline of fs, rename and reset requests.
    pub request_timeout_secs: u64,
    /// Deadline of each upload chunk (renewed by each acknowledgement).
    pub upload_chunk_timeout_secs: u64,
    /// Time an `execute` gets past its own timeout for the board to report.
    pub exec_grace_secs: u64,
    /// The largest file the admin API accepts for an upload.
    pub max_upload_bytes: u64,
    /// Finished requests remembered per board.
    pub history_len: usize,
    /// Output kept per request and board (stdout and stderr together); the rest is cut.
    pub max_output_bytes: usize,
    /// `install`: the "simple" index (PEP 691 JSON or PEP 503 HTML) package names are resolved
    /// from (unset: only local packages can be installed).
    pub package_index: Option<String>,
    /// `install`: the largest package file (download or local archive).
    pub max_package_bytes: u64,
    /// `install`: the most a package may unpack to.
    pub max_package_unpacked_bytes: u64,
    /// `install`: the most files a package may hold.
    pub max_package_files: usize,
}

impl Default for BoardSettings {
    fn default() -> Self {
        BoardSettings {
            require_approval: false,
            max_concurrent_per_board: 1,
            request_timeout_secs: 30,
            upload_chunk_timeout_secs: 30,
            exec_grace_secs: 5,
            max_upload_bytes: 64 << 20,
            history_len: 50,
            max_output_bytes: 1 << 20,
            package_index: None,
            max_package_bytes: 16 << 20,
            max_package_unpacked_bytes: 16 << 20,
            max_package_files: 1000,
        }
    }
}

impl BoardSettings {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_per_board == 0 {
            return Err("boards.max_concurrent_per_board must be at least 1".into());
        }
        if self.request_timeout_secs == 0 || self.upload_chunk_timeout_secs == 0 {
            return Err("boards.request_timeout_secs and upload_chunk_timeout_secs must be at least 1".into());
        }
        if let Some(index) = &self.package_index {
            if !(index.starts_with("http://") || index.starts_with("https://")) {
                return Err("boards.package_index must be an http:// or https:// URL".into());
            }
        }
        Ok(())
    }

    /// The caps `install` applies.
    pub fn package_limits(&self) -> install::Limits {
        install::Limits {
            max_download_bytes: self.max_package_bytes,
            max_unpacked_bytes: self.max_package_unpacked_bytes,
            max_files: self.max_package_files,
        }
    }
}
