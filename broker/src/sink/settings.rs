//! `[spool]` settings: where each sink's spool lives and how it trades durability for speed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use roost_spool::{FsyncPolicy, FullPolicy, SpoolConfig};
use serde::{Deserialize, Serialize};

/// `[spool]`: one spool per sink, in `<data_dir>/spool/<sink>/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSettings {
    /// When an append (and so a PUBACK) counts as stored.
    pub fsync: Fsync,
    /// With `fsync = "interval"`: the longest time between two syncs.
    pub fsync_interval_ms: u64,
    /// The most bytes a sink's spool holds on disk.
    pub max_bytes: u64,
    /// What a full spool does.
    pub full: Full,
    /// Segment files are closed and a new one started past this size.
    pub segment_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fsync {
    /// `fdatasync` before the PUBACK, once per group of appends: survives power loss.
    Always,
    /// Synced every `fsync_interval_ms`: a crash of Roost loses nothing, a power cut up to that.
    Interval,
    /// Never synced by Roost: survives a crash of Roost, not of the machine.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Full {
    /// Publishers wait for the sink to catch up (backpressure).
    Block,
    /// The oldest segment is deleted unwritten, and counted.
    DropOldest,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            fsync: Fsync::Always,
            fsync_interval_ms: 200,
            max_bytes: 1 << 30,
            full: Full::Block,
            segment_bytes: 64 << 20,
        }
    }
}

impl SpoolSettings {
    /// What is wrong with the settings, as `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_bytes < 1 << 20 {
            return Err(("spool.max_bytes", format!("{} is under 1 MiB (1048576)", self.max_bytes)));
        }
        if self.segment_bytes < 4096 || self.segment_bytes > self.max_bytes / 2 {
            let message =
                format!("{} must be at least 4096 and at most half of spool.max_bytes", self.segment_bytes);
            return Err(("spool.segment_bytes", message));
        }
        if self.fsync == Fsync::Interval && self.fsync_interval_ms == 0 {
            return Err(("spool.fsync_interval_ms", "must be above 0 with fsync = \"interval\"".into()));
        }
        Ok(())
    }

    /// The spool's behaviour.
    pub fn config(&self) -> SpoolConfig {
        SpoolConfig {
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes,
            full: match self.full {
                Full::Block => FullPolicy::Block,
                Full::DropOldest => FullPolicy::DropOldest,
            },
            fsync: match self.fsync {
                Fsync::Always => FsyncPolicy::Always,
                Fsync::Interval => FsyncPolicy::Interval(Duration::from_millis(self.fsync_interval_ms)),
                Fsync::Never => FsyncPolicy::Never,
            },
            weigh: Some(super::codec::record_count),
            ..SpoolConfig::default()
        }
    }
}

/// A sink's spool directory. Names that are not plain file names (config allows any) are
/// spelled with their other characters as `%XX`.
pub fn dir(data_dir: &Path, sink: &str) -> PathBuf {
    const UNSAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    data_dir.join("spool").join(utf8_percent_encode(sink, UNSAFE).to_string())
}

/// The name of a sink's spool as a stream of positions: `<sink>/<id>`, where the id is made
/// when the spool directory is (kept in its `stream` file). A spool deleted and made again
/// starts its sequence numbers at 0 under a new id, so positions a database stored for the old
/// one are never taken for the new one's.
pub fn stream(dir: &Path, sink: &str) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("stream");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        Ok(_) => new_stream_id(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_stream_id(&path)?,
        Err(e) => return Err(e),
    };
    Ok(format!("{sink}/{id}"))
}

fn new_stream_id(path: &Path) -> std::io::Result<String> {
    let id = format!("{:016x}", rand::random::<u64>());
    crate::datadir::write_atomic(path, id.as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_names_become_safe_distinct_directories() {
        let d = Path::new("/data");
        assert_eq!(dir(d, "pg-main_1"), Path::new("/data/spool/pg-main_1"));
        assert_eq!(dir(d, "../x"), Path::new("/data/spool/%2E%2E%2Fx"));
        assert_eq!(dir(d, "a b"), Path::new("/data/spool/a%20b"));
        assert_ne!(dir(d, "a%20b"), dir(d, "a b"));
    }

    #[test]
    fn a_spool_keeps_its_stream_name_and_a_new_spool_gets_another() {
        let data = tempfile::tempdir().unwrap();
        let d = dir(data.path(), "pg");
        let first = stream(&d, "pg").unwrap();
        assert!(first.starts_with("pg/") && first.len() == 3 + 16, "{first}");
        assert_eq!(stream(&d, "pg").unwrap(), first);
        std::fs::remove_dir_all(&d).unwrap();
        assert_ne!(stream(&d, "pg").unwrap(), first);
    }

    #[test]
    fn settings_are_checked_and_parsed() {
        assert!(SpoolSettings::default().check().is_ok());
        let s: SpoolSettings = serde_json::from_str(r#"{"fsync":"interval","full":"drop-oldest"}"#).unwrap();
        assert_eq!(s.config().full, FullPolicy::DropOldest);
        assert_eq!(s.config().fsync, FsyncPolicy::Interval(Duration::from_millis(200)));
        let tiny = SpoolSettings { max_bytes: 1000, ..Default::default() };
        assert_eq!(tiny.check().unwrap_err().0, "spool.max_bytes");
        assert!(serde_json::from_str::<SpoolSettings>(r#"{"fsync":"sometimes"}"#).is_err());
    }
}
