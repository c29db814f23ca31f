//! Files Roost keeps in its data directory besides the databases: the admin token (0600,
//! written on first start), the lock a running server holds, the pid file, and `runtime.json`
//! with the addresses the running server actually bound, which the CLI reads to find it.
//! Files are replaced atomically and durably ([`write_atomic`]). The directory is private: made
//! 0700, everything in it created 0600/0700 ([`ensure`]).

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use atomic_write_file::AtomicWriteFile;
use serde::{Deserialize, Serialize};

pub const TOKEN_FILE: &str = "admin.token";
pub const LOCK_FILE: &str = "roost.lock";
pub const PID_FILE: &str = "roost.pid";
pub const RUNTIME_FILE: &str = "runtime.json";

/// Where the running server listens; written once both listeners are bound.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    pub pid: u32,
    pub mqtt: String,
    pub api: String,
    /// Whether the API speaks HTTPS.
    #[serde(default)]
    pub api_tls: bool,
    /// The MQTT-over-TLS listener, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtts: Option<String>,
}

/// Makes the data directory private: creates it (0700) if needed, sets the process umask so
/// that every file and directory Roost creates is readable by its own user only (0600/0700),
/// and refuses a directory that other users can write (they could replace processors, the
/// board registry or spooled records). One that others can only read is closed (0700).
pub fn ensure(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let mode = fs::metadata(dir).with_context(|| format!("reading data directory {}", dir.display()))?.mode();
    if mode & 0o022 != 0 {
        bail!(
            "data directory {} is writable by other users (mode {:o}): they could replace what Roost \
             runs and stores. Make it private with `chmod 700 {}` (and check who owns it)",
            dir.display(),
            mode & 0o777,
            dir.display()
        );
    }
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making data directory {} private (chmod 700)", dir.display()))?;
        tracing::warn!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "data directory was readable by other users; it is now 0700");
    }
    Ok(())
}

/// `<data_dir>/mqtt`, where the broker keeps retained messages and sessions, created if needed.
pub fn broker_dir(dir: &Path) -> Result<PathBuf> {
    let mqtt = dir.join("mqtt");
    fs::create_dir_all(&mqtt).with_context(|| format!("creating {}", mqtt.display()))?;
    Ok(mqtt)
}

/// Reads the admin token, creating a random one (mode 0600) on first start.
/// Returns the token and whether it was just created.
pub fn admin_token(dir: &Path) -> Result<(String, bool)> {
    let path = dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), false)),
        Ok(_) => bail!("{} is empty; delete it to have Roost write a new token", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_file(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((token, true))
}

/// Reads the token for a client (the CLI).
pub fn read_token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    let t = fs::read_to_string(&path).with_context(|| {
        format!("reading the admin token {} (is this Roost's data directory?)", path.display())
    })?;
    Ok(t.trim().to_owned())
}

/// The pid in the data directory's pid file, if a live process holds it.
pub fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(dir.join(PID_FILE)).ok()?.trim().parse().ok()?;
    process_alive(pid).then_some(pid)
}

/// Whether `pid` names a live (not zombie) process.
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Claims the data directory for this process: locks [`LOCK_FILE`] (an advisory lock, held
/// until the guard drops or the process ends, however it ends), then writes the pid file.
/// Refuses if another process holds the lock.
pub fn write_pid(dir: &Path) -> Result<PidGuard> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let who = match running_pid(dir) {
                Some(pid) => format!("another roost (pid {pid})"),
                None => "another roost (starting or stopping)".to_owned(),
            };
            bail!(
                "{who} is using data directory {}; stop it with `roost stop --data-dir {}`",
                dir.display(),
                dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", lock_path.display()));
        }
    }
    let path = dir.join(PID_FILE);
    write_atomic(&path, format!("{}\n", std::process::id()).as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(PidGuard { dir: dir.to_owned(), _lock: lock })
}

pub fn write_runtime(dir: &Path, runtime: &Runtime) -> Result<()> {
    let path = dir.join(RUNTIME_FILE);
    write_atomic(&path, &serde_json::to_vec_pretty(runtime)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file in the same directory,
/// synced, renamed over `path`, and the directory synced, so a crash leaves the old file or the
/// new one, never a part. A new file gets mode 0666 less the umask, as with `fs::write`; a
/// replaced one keeps its mode.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_file(path, bytes, 0o666)
}

/// [`write_atomic`] with the mode a new file gets.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = AtomicWriteFile::options().mode(mode).open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

pub fn read_runtime(dir: &Path) -> Option<Runtime> {
    serde_json::from_slice(&fs::read(dir.join(RUNTIME_FILE)).ok()?).ok()
}

/// Holds the data directory's lock; removes the pid and runtime files when the server exits
/// (the lock file stays: a new server locks the same file).
pub struct PidGuard {
    dir: PathBuf,
    _lock: File,
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        // Before the lock is released (when `_lock` drops after this), so a server that takes
        // the lock next never has its files removed.
        let _ = fs::remove_file(self.dir.join(RUNTIME_FILE));
        let _ = fs::remove_file(self.dir.join(PID_FILE));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn token_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, created) = admin_token(dir.path()).unwrap();
        assert!(created);
        assert_eq!(t1.len(), 64);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (t2, created) = admin_token(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
        assert_eq!(read_token(dir.path()).unwrap(), t1);
    }

    #[test]
    fn the_data_directory_is_claimed_by_one_guard_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let guard = write_pid(dir.path()).unwrap();
        let err = write_pid(dir.path()).err().expect("a second claim is refused").to_string();
        assert!(err.contains(&format!("another roost (pid {})", std::process::id())), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "the error names the data directory: {err}");
        drop(guard);
        assert!(dir.path().join(LOCK_FILE).exists(), "the lock file stays");
        let _again = write_pid(dir.path()).unwrap();
    }

    #[test]
    fn atomic_writes_replace_the_whole_file_and_keep_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"first").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f.json"], "no temporary file is left behind");
    }

    #[test]
    fn stale_pid_file_is_ignored_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PID_FILE), "999999999\n").unwrap();
        assert_eq!(running_pid(dir.path()), None);
        let guard = write_pid(dir.path()).unwrap();
        assert_eq!(running_pid(dir.path()), Some(std::process::id()));
        drop(guard);
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
