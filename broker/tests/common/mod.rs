//! Shared harness for the integration tests: starts the real `roost` binary on free ports with a
//! temporary data directory, and talks to it with real clients.
#![allow(dead_code)]

pub mod boards;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;

pub const ROOST: &str = env!("CARGO_BIN_EXE_roost");

/// A running `roost serve`.
pub struct Roost {
    pub child: Child,
    pub dir: PathBuf,
    pub mqtt: SocketAddr,
    pub api: SocketAddr,
    pub token: String,
    pub log: PathBuf,
}

impl Roost {
    /// Starts `roost serve` on free ports with `dir` as its data directory and optional config.
    pub fn start(dir: &Path, config: Option<&str>) -> Roost {
        Self::start_with(dir, config, "127.0.0.1:0")
    }

    /// Like [`Roost::start`], with the MQTT listener on `mqtt_listen`.
    pub fn start_with(dir: &Path, config: Option<&str>, mqtt_listen: &str) -> Roost {
        Self::try_start(dir, config, mqtt_listen).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(dir: &Path, config: Option<&str>, mqtt_listen: &str) -> Result<Roost, String> {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new(ROOST);
        if let Some(text) = config {
            let file = dir.join("test-config.toml");
            std::fs::write(&file, text).unwrap();
            cmd.arg("--config").arg(file);
        }
        let log = dir.join(format!("roost-{}.log", unique()));
        let _ = std::fs::remove_file(dir.join("runtime.json"));
        let child = cmd
            .args(["serve", "--mqtt-listen", mqtt_listen, "--api-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("ROOST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut roost = Roost {
            child,
            dir: dir.to_owned(),
            mqtt: "0.0.0.0:0".parse().unwrap(),
            api: "0.0.0.0:0".parse().unwrap(),
            token: String::new(),
            log,
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = roost.child.try_wait().unwrap() {
                return Err(format!("roost exited with {status} while starting:\n{}", roost.log_text()));
            }
            if let Ok(bytes) = std::fs::read(dir.join("runtime.json")) {
                let rt: Value = serde_json::from_slice(&bytes).unwrap();
                if rt["pid"].as_u64() == Some(roost.child.id() as u64) {
                    roost.mqtt = rt["mqtt"].as_str().unwrap().parse().unwrap();
                    roost.api = rt["api"].as_str().unwrap().parse().unwrap();
                    roost.token = std::fs::read_to_string(dir.join("admin.token")).unwrap().trim().to_owned();
                    return Ok(roost);
                }
            }
            if Instant::now() > until {
                return Err(format!("roost did not start in time:\n{}", roost.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(60))
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("roost did not exit within {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("roost.db")).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// `GET /api/v1/status` with the token.
    pub async fn status(&self) -> Value {
        let resp = reqwest::Client::new()
            .get(self.url("/api/v1/status"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits until `cond` holds on the status document.
    pub async fn wait_status(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status().await;
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}; status: {s:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Roost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).unwrap()
}

/// Publishes `payloads` to `topic` at QoS 1 with one rumqttc (MQTT 3.1.1) client and returns
/// once every PUBACK has arrived.
pub async fn publish_all(addr: SocketAddr, client_id: impl Into<String>, messages: Vec<(String, Vec<u8>)>) {
    let client_id: String = client_id.into();
    let mut opts = MqttOptions::new(client_id.clone(), addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let total = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    let until = Instant::now() + Duration::from_secs(120);
    while acked < total {
        let Ok(event) = tokio::time::timeout_at(until.into(), eventloop.poll()).await else {
            panic!("{client_id}: only {acked}/{total} PUBACKs in time");
        };
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => panic!("{client_id}: mqtt error after {acked}/{total} PUBACKs: {e}"),
        }
    }
    let client = sender.await.unwrap();
    let _ = client.disconnect().await;
}

/// Runs `mosquitto_pub` with `args`, feeding `stdin`; panics unless it succeeds.
pub fn mosquitto_pub(addr: SocketAddr, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub not found: run `make services` or install mosquitto-clients");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mosquitto_pub {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Publishes `{"seq": n}` to `topic` at QoS 1, n = 0, 1, 2, ..., until the connection drops.
/// Returns the seqs the broker acknowledged with a PUBACK.
pub async fn publish_until_disconnected(addr: SocketAddr, client_id: String, topic: String) -> Vec<u64> {
    use std::collections::HashMap;
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_inflight(50);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let sender = tokio::spawn(async move {
        for seq in 0u64..10_000_000 {
            let payload = format!("{{\"seq\":{seq}}}");
            if client.publish(topic.clone(), QoS::AtLeastOnce, false, payload).await.is_err() {
                break;
            }
        }
    });
    // rumqttc sends publishes in the order they were requested: the n-th outgoing PUBLISH is seq n.
    let mut next_seq = 0u64;
    let mut by_pkid: HashMap<u16, u64> = HashMap::new();
    let mut acked = Vec::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                by_pkid.insert(pkid, next_seq);
                next_seq += 1;
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(seq) = by_pkid.remove(&ack.pkid) {
                    acked.push(seq);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    sender.abort();
    acked
}
