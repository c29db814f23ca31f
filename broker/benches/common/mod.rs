//! What the benchmarks share: the real `roost` (release build) started on free ports with a
//! temporary data directory, found through its `runtime.json`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `roost serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub mqtt: SocketAddr,
    pub api: SocketAddr,
    pub token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `roost serve` on free ports in `dir`, with `config` as its config file if given.
pub fn start(dir: &Path, config: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    if let Some(config) = config {
        let file = dir.join("bench.toml");
        std::fs::write(&file, config).unwrap();
        cmd.arg("--config").arg(file);
    }
    let child = cmd
        .args(["serve", "--mqtt-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("ROOST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let unset: SocketAddr = "0.0.0.0:0".parse().unwrap();
    // Owned by `Server` from here on, so it is killed however this ends.
    let mut server = Server { child, mqtt: unset, api: unset, token: String::new() };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(bytes) = std::fs::read(dir.join("runtime.json")) {
            let rt: Value = serde_json::from_slice(&bytes).unwrap();
            if rt["pid"].as_u64() == Some(server.child.id() as u64) {
                server.mqtt = rt["mqtt"].as_str().unwrap().parse().unwrap();
                server.api = rt["api"].as_str().unwrap().parse().unwrap();
                server.token = std::fs::read_to_string(dir.join("admin.token")).unwrap().trim().to_owned();
                return server;
            }
        }
        let exited = server.child.try_wait().unwrap();
        assert!(exited.is_none(), "roost exited while starting: {exited:?}");
        assert!(Instant::now() < until, "roost did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
