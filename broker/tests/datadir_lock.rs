//! One data directory, one server: `roost serve` holds a lock on the data directory for its
//! lifetime, so two servers started at the same moment cannot both run on it, and a server that
//! was killed leaves the directory free for the next one.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Roost, ROOST};

/// Starts `roost serve` on free ports with `dir` as its data directory, its log in `log`.
fn spawn_serve(dir: &Path, log: &Path) -> Child {
    Command::new(ROOST)
        .args(["serve", "--mqtt-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("ROOST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Runs a client command (`roost status`, `roost stop`) on `dir`; its stdout, or its stderr
/// as the error.
fn roost(args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new(ROOST).args(args).arg("--data-dir").arg(dir).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Waits until `runtime.json` in `dir` names `pid` (the server has bound its listeners).
fn wait_until_serving(dir: &Path, pid: u32, log: &Path) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let runtime: Option<serde_json::Value> =
            std::fs::read(dir.join("runtime.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if runtime.is_some_and(|r| r["pid"].as_u64() == Some(u64::from(pid))) {
            return;
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < until, "roost (pid {pid}) did not start in time:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_servers_started_together_on_one_data_dir_one_runs_and_the_other_names_the_dir() {
    // Several rounds: without the lock both used to pass the pid file check now and then.
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
        let mut servers = [spawn_serve(dir.path(), &logs[0]), spawn_serve(dir.path(), &logs[1])];

        // One of them gives up at once; the other keeps running.
        let until = Instant::now() + Duration::from_secs(60);
        let (loser, status) = loop {
            if let Some((i, status)) =
                servers.iter_mut().enumerate().find_map(|(i, c)| c.try_wait().unwrap().map(|s| (i, s)))
            {
                break (i, status);
            }
            assert!(Instant::now() < until, "round {round}: both servers are still running on one data dir");
            std::thread::sleep(Duration::from_millis(20));
        };
        let winner = 1 - loser;
        let err = std::fs::read_to_string(&logs[loser]).unwrap();
        assert!(!status.success() && status.code().is_some(), "round {round}: {status}:\n{err}");
        assert!(
            err.contains(&format!("is using data directory {}", dir.path().display())),
            "round {round}: the error names the data directory:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");

        let pid = servers[winner].id();
        wait_until_serving(dir.path(), pid, &logs[winner]);
        assert_eq!(servers[winner].try_wait().unwrap(), None, "round {round}: the winner is running");

        // The client commands find the one that runs, through the pid and runtime files.
        let status = roost(&["status", "--json"], dir.path()).unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["pid"].as_u64(), Some(u64::from(pid)), "{status:#}");
        roost(&["stop"], dir.path()).unwrap();
        let exit = servers[winner].wait().unwrap();
        assert!(exit.success(), "round {round}: {exit}");
        assert!(!dir.path().join("roost.pid").exists(), "the pid file is removed on exit");
    }
}

#[test]
fn a_killed_server_leaves_the_data_dir_free_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Roost::start(dir.path(), None);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Its pid file is left behind, and names no live process.
    assert!(dir.path().join("roost.pid").exists());
    let err = roost(&["stop"], dir.path()).unwrap_err();
    assert!(err.contains("roost is not running"), "{err}");

    let second = Roost::start(dir.path(), None);
    let status = roost(&["status", "--json"], dir.path()).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["pid"].as_u64(), Some(u64::from(second.child.id())));
    assert!(second.stop().success());
}
