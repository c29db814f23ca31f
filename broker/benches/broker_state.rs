//! `make bench`: what the state the broker keeps for clients costs the data path.
//!
//! Runs the end-to-end load of the `e2e` benchmark (8 rumqttc clients, QoS 1, 100-byte JSON, into
//! SQLite, timed until every row is committed) on a fresh `roost` (release build), alternately
//! with nothing held and with 1,000 retained topics and 1,000 persistent sessions held (each
//! session offline, subscribed to its own topic and a wildcard filter the load does not match),
//! three rounds each, and prints every rate and the medians' ratio. Then it times a stop and a
//! start of the Roost holding that state (the sessions saved and restored).
//!
//! `ROOST_BENCH_MESSAGES` sets the message count per run (default 400000).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

mod common;

use common::{publish, start, wait_for};
use roost_testkit::Roost;

const CLIENTS: usize = 8;
const RETAINED: usize = 1000;
const SESSIONS: usize = 1000;

fn options(addr: SocketAddr) -> impl Fn(usize) -> MqttOptions + Clone + Send + 'static {
    move |c| MqttOptions::new(format!("bench-{c}"), addr.ip().to_string(), addr.port())
}

/// Runs one rumqttc client until `done` says its work is over (every awaited ack seen).
async fn drive(opts: MqttOptions, work: impl FnOnce(AsyncClient) -> (usize, bool)) {
    let (client, mut events) = AsyncClient::new(opts, 2000);
    let (acks, is_sub) = work(client.clone());
    let mut seen = 0;
    while seen < acks {
        match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) if !is_sub => seen += 1,
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if is_sub => seen += 1,
            Ok(Ok(_)) => {}
            other => panic!("while setting up the state: {other:?}"),
        }
    }
    client.disconnect().await.unwrap();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
        if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
}

/// Retains `RETAINED` topics and leaves `SESSIONS` persistent sessions behind, offline.
async fn hold_state(addr: SocketAddr) {
    let opts = MqttOptions::new("retainer", addr.ip().to_string(), addr.port());
    drive(opts, |client| {
        tokio::spawn(async move {
            for i in 0..RETAINED {
                let payload = format!(r#"{{"state":"idle","board":"b-{i}","since":1700000000}}"#);
                client.publish(format!("status/b-{i}"), QoS::AtLeastOnce, true, payload).await.unwrap();
            }
        });
        (RETAINED, false)
    })
    .await;
    let mut tasks = Vec::new();
    for batch in 0..10 {
        tasks.push(tokio::spawn(async move {
            for i in (batch..SESSIONS).step_by(10) {
                let mut opts = MqttOptions::new(format!("watcher-{i}"), addr.ip().to_string(), addr.port());
                opts.set_clean_session(false);
                drive(opts, |client| {
                    tokio::spawn(async move {
                        client.subscribe(format!("notify/{i}"), QoS::AtLeastOnce).await.unwrap();
                        client.subscribe("alerts/+/fire", QoS::AtLeastOnce).await.unwrap();
                    });
                    (2, true)
                })
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// One run on a fresh Roost: the rate, and the Roost (to be stopped).
async fn run(per_client: u64, with_state: bool, http: &reqwest::Client) -> (f64, Roost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None);
    if with_state {
        hold_state(server.mqtt).await;
    }
    let total = per_client * CLIENTS as u64;
    let started = Instant::now();
    publish(CLIENTS, per_client, options(server.mqtt)).await;
    wait_for(&server, http, "/sinks/0/records_written", total).await;
    (total as f64 / started.elapsed().as_secs_f64(), server, dir)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let total: u64 =
        std::env::var("ROOST_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(400_000);
    let per_client = total / CLIENTS as u64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::new();
    println!(
        "roost broker-state benchmark: {CLIENTS} clients, QoS 1, 100-byte JSON into SQLite, {} messages per run",
        per_client * CLIENTS as u64
    );
    rt.block_on(async {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut last = None;
        for round in 1..=3 {
            let (rate, server, _dir) = run(per_client, false, &http).await;
            println!("round {round}: {:<52} {rate:>9.0} msg/s", "nothing held");
            without.push(rate);
            drop(server);
            let (rate, server, dir) = run(per_client, true, &http).await;
            let held = format!("{RETAINED} retained topics, {SESSIONS} persistent sessions");
            println!("round {round}: {held:<52} {rate:>9.0} msg/s");
            with.push(rate);
            last = Some((server, dir));
        }
        let (a, b) = (median(without), median(with));
        println!(
            "median: {a:.0} msg/s without, {b:.0} msg/s with state held: {:+.1}%",
            (b / a - 1.0) * 100.0
        );

        // A stop saves the sessions, a start restores them.
        let (server, dir) = last.unwrap();
        let (data, addr) = (server.dir.clone(), server.mqtt.to_string());
        let stopping = Instant::now();
        assert!(server.stop().success());
        let stopped = stopping.elapsed();
        let starting = Instant::now();
        let server = roost_testkit::Launch::new(env!("CARGO_BIN_EXE_roost")).mqtt_listen(&addr).start(&data);
        println!(
            "with that state: stop (sessions saved) {:.2}s, start (sessions restored) until ready {:.2}s",
            stopped.as_secs_f64(),
            starting.elapsed().as_secs_f64()
        );
        drop(server);
        drop(dir);
    });
}
