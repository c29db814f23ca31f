//! Shared harness for the integration tests: the real `roost` binary on free ports with a
//! temporary data directory (the test kit's, bound to this package's binary), and real MQTT
//! clients to talk to it.
#![allow(dead_code)]

pub mod boards;
pub mod durability;
pub mod raw;

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use roost_testkit::Launch;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

pub const ROOST: &str = env!("CARGO_BIN_EXE_roost");

/// A running `roost serve` of this package's binary: the kit's [`roost_testkit::Roost`] (its
/// fields and methods through `Deref`), started without naming the binary each time.
pub struct Roost(roost_testkit::Roost);

impl Roost {
    /// Starts `roost serve` on free ports with `dir` as its data directory and optional config.
    pub fn start(dir: &Path, config: Option<&str>) -> Roost {
        Roost(Launch::new(ROOST).config(config).start(dir))
    }

    /// Like [`Roost::start`], with the MQTT listener on `mqtt_listen`.
    pub fn start_with(dir: &Path, config: Option<&str>, mqtt_listen: &str) -> Roost {
        Roost(Launch::new(ROOST).config(config).mqtt_listen(mqtt_listen).start(dir))
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(self) -> ExitStatus {
        self.0.stop()
    }

    /// [`Roost::stop`], and the whole log.
    pub fn stop_with_log(self) -> (ExitStatus, String) {
        self.0.stop_with_log()
    }

    /// The default SQLite sink's database.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("roost.db")).unwrap()
    }
}

impl Deref for Roost {
    type Target = roost_testkit::Roost;
    fn deref(&self) -> &roost_testkit::Roost {
        &self.0
    }
}

impl DerefMut for Roost {
    fn deref_mut(&mut self) -> &mut roost_testkit::Roost {
        &mut self.0
    }
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
    let until = Instant::now() + Duration::from_secs(300);
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

/// Adds a device with the CLI; its secret (the last line printed).
pub fn add_device(roost: &Roost, name: &str) -> String {
    let (ok, out, err) = roost.cli(&["device", "add", name]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("username \"{name}\"")), "{out}");
    out.lines().last().unwrap().trim().to_owned()
}

/// Stops `roost` (cleanly) and counts each device's rows in the default SQLite sink's `env`.
pub fn rows_after_stop(roost: Roost, devices: &[&str]) -> Vec<i64> {
    let db = roost.dir.join("roost.db");
    let (status, log) = roost.stop_with_log();
    assert!(status.success(), "{log}");
    let conn = rusqlite::Connection::open(db).unwrap();
    let count = |d: &&str| {
        conn.query_row("SELECT count(*) FROM env WHERE device = ?1", [d], |r| r.get(0)).unwrap_or(0)
    };
    devices.iter().map(count).collect()
}
