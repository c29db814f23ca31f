//! Helpers for the board tests: `roost-board` agents as real processes, the admin API and the
//! `roost board` CLI as an operator runs it.
//!
//! The agent binary: cargo gives integration tests only their own package's binaries
//! (`CARGO_BIN_EXE_roost`), so the agent is found beside `roost` in the same target directory,
//! and built there once (`cargo build -p roost-board`, same profile) if it is missing. Under
//! `cargo nextest run` (`make test`) the build has finished when tests start, so this never waits
//! on cargo's lock; a stale agent is rebuilt the same way (cargo decides what is up to date).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Roost, ROOST};

/// The `roost-board` binary, built once if needed.
pub fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(ROOST).with_file_name("roost-board");
        let profile_dir = Path::new(ROOST).parent().unwrap();
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "-q", "-p", "roost-board", "--bin", "roost-board"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cargo.env("CARGO_TARGET_DIR", target);
        }
        let status = cargo.current_dir(env!("CARGO_MANIFEST_DIR")).status();
        assert!(
            bin.exists(),
            "{} is missing and `cargo build -p roost-board` did not make it ({status:?})",
            bin.display()
        );
        bin
    })
}

/// A `roost-board` process; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub name: String,
}

impl Agent {
    pub fn start(roost: &Roost, name: &str, root: &Path, extra: &[&str]) -> Agent {
        Agent::start_at(root, name, &[&["--server", &roost.mqtt.to_string()], extra].concat())
    }

    /// An agent whose `--server` (and everything else) is in `args`.
    pub fn start_at(root: &Path, name: &str, args: &[&str]) -> Agent {
        let log = std::fs::File::create(root.with_extension("log")).unwrap();
        let child = Command::new(agent_bin())
            .args(["--name", name, "--root"])
            .arg(root)
            .args(args)
            .env("ROOST_BOARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child, name: name.to_owned() }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts agents `names` with roots under `dir`.
pub fn agents(roost: &Roost, dir: &Path, names: &[&str], extra: &[&str]) -> Vec<Agent> {
    names.iter().map(|n| Agent::start(roost, n, &dir.join(n), extra)).collect()
}

pub async fn api_get(roost: &Roost, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(roost.url(&format!("/api/v1{path}")))
        .bearer_auth(&roost.token)
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// Waits until every board in `names` is listed with `state`.
pub async fn wait_boards(roost: &Roost, names: &[&str], state: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api_get(roost, "/boards").await;
        let ok = names.iter().all(|n| {
            list["boards"].as_array().unwrap().iter().any(|b| b["name"] == *n && b["state"] == state)
        });
        if ok {
            return;
        }
        assert!(Instant::now() < until, "boards {names:?} not {state}: {list:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn counters(roost: &Roost) -> Value {
    api_get(roost, "/boards/counters").await
}

/// Runs `roost board ARGS` against `roost`, feeding `stdin`.
pub async fn cli(roost: &Roost, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(ROOST);
    cmd.arg("board").args(args).arg("--data-dir").arg(&roost.dir);
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn header(name: &str) -> String {
    let h = format!("## Executing on '{name}' ");
    format!("{h}{}", "#".repeat(80 - h.len()))
}

/// Splits `exec` output into (board, body) sections in the order printed.
pub fn sections(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("## Executing on '") {
            let name = rest.split('\'').next().unwrap().to_owned();
            assert_eq!(line, header(&name), "header not padded to 80 columns");
            out.push((name, String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        } else {
            panic!("output before the first header: {line:?}");
        }
    }
    out
}
