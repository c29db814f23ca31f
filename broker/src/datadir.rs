//! Files Roost keeps in its data directory besides the databases: the admin token (0600,
//! written on first start), the pid file, and `runtime.json` with the addresses the running
//! server actually bound, which the CLI reads to find it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const TOKEN_FILE: &str = "admin.token";
pub const PID_FILE: &str = "roost.pid";
pub const RUNTIME_FILE: &str = "runtime.json";

/// Where the running server listens; written once both listeners are bound.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    pub pid: u32,
    pub mqtt: String,
    pub api: String,
}

/// Creates the data directory if needed.
pub fn ensure(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))
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
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{token}").with_context(|| format!("writing {}", path.display()))?;
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

/// Claims the data directory for this process: refuses if another live Roost holds it.
pub fn write_pid(dir: &Path) -> Result<PidGuard> {
    if let Some(pid) = running_pid(dir) {
        if pid != std::process::id() {
            bail!(
                "another roost (pid {pid}) is using data directory {}; stop it with `roost stop --data-dir {}`",
                dir.display(),
                dir.display()
            );
        }
    }
    let path = dir.join(PID_FILE);
    fs::write(&path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(PidGuard { dir: dir.to_owned() })
}

pub fn write_runtime(dir: &Path, runtime: &Runtime) -> Result<()> {
    let path = dir.join(RUNTIME_FILE);
    let tmp = dir.join(format!("{RUNTIME_FILE}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(runtime)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

pub fn read_runtime(dir: &Path) -> Option<Runtime> {
    serde_json::from_slice(&fs::read(dir.join(RUNTIME_FILE)).ok()?).ok()
}

/// Removes the pid and runtime files when the server exits.
pub struct PidGuard {
    dir: PathBuf,
}

impl Drop for PidGuard {
    fn drop(&mut self) {
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
