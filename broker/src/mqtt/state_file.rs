//! The files the broker keeps its state in (`<data_dir>/mqtt/retained`, `.../sessions`):
//! MessagePack with a version, replaced atomically; a file Roost cannot read is moved aside
//! (`<name>.unreadable`, kept for a look) and Roost starts without what it held.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

use crate::datadir;

/// The format this build writes and reads.
pub const VERSION: u32 = 1;

/// A state file's contents, which say what format they are in.
pub trait Versioned {
    fn version(&self) -> u32;
}

/// Reads the state at `path` (`what` names it in the log): none if there is no file, or it cannot
/// be read (then it is set aside, and said so).
pub fn read<T: DeserializeOwned + Versioned>(path: &Path, what: &str) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the {what}; starting without them");
            return None;
        }
    };
    let why = match rmp_serde::from_slice::<T>(&bytes) {
        Ok(state) if state.version() == VERSION => return Some(state),
        Ok(state) => format!("unknown version {}", state.version()),
        Err(e) => e.to_string(),
    };
    let aside = path.with_extension("unreadable");
    let moved = std::fs::rename(path, &aside);
    warn!(path = %path.display(), why, moved_to = %aside.display(), moved = moved.is_ok(),
        "{what} could not be read; starting without them");
    None
}

/// Replaces the file at `path` with `state`, atomically, off the async threads.
pub async fn write<T: Serialize + Send + 'static>(path: PathBuf, state: T) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let bytes = rmp_serde::to_vec_named(&state).map_err(std::io::Error::other)?;
        datadir::write_atomic(&path, &bytes)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Now, in Unix milliseconds (what expiries are saved in).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
