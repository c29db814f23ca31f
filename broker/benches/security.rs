//! `make bench`: what device credentials, the topic rules and TLS cost, and how many
//! authenticated connections one node holds.
//!
//! 1. Throughput, end to end into SQLite: 8 clients, QoS 1 (100 in flight each), 100-byte JSON,
//!    - all off: anonymous clients on the plain (loopback) listener;
//!    - credentials + rules: each client a registered device giving its secret (argon2id checked
//!      at connect) whose every publish passes its topic rule;
//!    - credentials + rules + TLS: the same over the TLS listener (certificates from
//!      `roost tls init`, rustls, TLS 1.3).
//!
//!    (It prints messages/s and the cost of each against all off.)
//! 2. Connections: `ROOST_BENCH_DEVICES` devices (default 10000) are registered, connect with
//!    their secrets over the plain listener and stay connected (keepalive answered); it prints how
//!    long registering and connecting took and roost's resident memory (VmRSS) before and with
//!    all of them connected.
//!
//! `ROOST_BENCH_MESSAGES` sets the messages per throughput run (default 400000).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{publish, start, wait_for};
use roost_board::tls::{tls_config, AgentTls};
use roost_testkit::Roost;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};

const CLIENTS: usize = 8;

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A CA and a server certificate for 127.0.0.1 in `dir`, from `roost tls init`.
fn pki(dir: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["tls", "init", "--san", "127.0.0.1", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn config(pki: &Path) -> String {
    format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.join("server.pem").display(),
        pki.join("server.key").display()
    )
}

/// Registers devices `{prefix}{i}` for `i` in `0..n` over the admin API, 16 at a time; their
/// secrets.
async fn register(server: &Roost, http: &reqwest::Client, prefix: &str, n: usize) -> Vec<String> {
    let url = format!("http://{}/api/v1/devices", server.api);
    let mut secrets = vec![String::new(); n];
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|i| {
            let req = http
                .post(&url)
                .bearer_auth(&server.token)
                .json(&serde_json::json!({"name": format!("{prefix}{i}")}));
            async move {
                let resp = req.send().await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
                resp.json::<serde_json::Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
            }
        });
        for (i, secret) in chunk.iter().zip(futures::future::join_all(calls).await) {
            secrets[*i] = secret;
        }
    }
    secrets
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// One throughput run: a fresh roost, `mode` picking the clients' credentials and listener.
async fn throughput(label: &str, mode: Mode, per_client: u64, http: &reqwest::Client) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki(&pki_dir);
    let server = start(&dir.path().join("data"), Some(&config(&pki_dir)));
    let secrets = match mode {
        Mode::Open => Vec::new(),
        Mode::Credentials | Mode::Tls => register(&server, http, "dev-", CLIENTS).await,
    };
    let (addr, tls) = match mode {
        Mode::Tls => {
            let tls = AgentTls { ca: pki_dir.join("ca.pem"), client: None };
            (server.mqtts.expect("the TLS listener"), Some(tls_config(&tls).unwrap()))
        }
        _ => (server.mqtt, None),
    };
    let options = move |c: usize| {
        let id = if secrets.is_empty() { format!("anon-{c}") } else { format!("dev-{c}") };
        let mut opts = MqttOptions::new(&id, addr.ip().to_string(), addr.port());
        if let Some(secret) = secrets.get(c) {
            opts.set_credentials(&id, secret);
        }
        if let Some(tls) = &tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls.clone())));
        }
        opts
    };
    let total = per_client * CLIENTS as u64;
    let started = Instant::now();
    publish(CLIENTS, per_client, options).await;
    wait_for(&server, http, "/sinks/0/records_written", total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("end to end into sqlite, {label:<28} {rate:>9.0} msg/s  ({total} rows)");
    rate
}

#[derive(Clone, Copy)]
enum Mode {
    Open,
    Credentials,
    Tls,
}

/// Connects `secrets.len()` devices and keeps them connected until `hold` is dropped; returns
/// once all are connected.
async fn connect_all(
    addr: SocketAddr,
    secrets: &[String],
    hold: &tokio::sync::watch::Receiver<()>,
) -> Duration {
    let started = Instant::now();
    let (up_tx, mut up_rx) = tokio::sync::mpsc::channel(1024);
    for (i, secret) in secrets.iter().enumerate() {
        let id = format!("fleet-{i}");
        let mut opts = MqttOptions::new(&id, addr.ip().to_string(), addr.port());
        opts.set_credentials(&id, secret);
        opts.set_keep_alive(Duration::from_secs(60));
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        // All of them at once: the last ones wait for the others' checks.
        let mut net = eventloop.network_options();
        net.set_connection_timeout(120);
        eventloop.set_network_options(net);
        let (up, mut hold) = (up_tx.clone(), hold.clone());
        tokio::spawn(async move {
            let _client = client;
            let mut connected = false;
            loop {
                tokio::select! {
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connected = true;
                            let _ = up.send(()).await;
                        }
                        Ok(_) => {}
                        Err(e) if !connected => panic!("device {id}: {e}"),
                        // The end of the benchmark: roost stops.
                        Err(_) => return,
                    },
                    _ = hold.changed() => return,
                }
            }
        });
    }
    for _ in 0..secrets.len() {
        up_rx.recv().await.unwrap();
    }
    started.elapsed()
}

fn main() {
    let messages = env_or("ROOST_BENCH_MESSAGES", 400_000);
    let per_client = messages / CLIENTS as u64;
    let devices = env_or("ROOST_BENCH_DEVICES", 10_000) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::new();
    println!(
        "roost security benchmark: {CLIENTS} clients, QoS 1, 100-byte JSON, {} messages per run; {devices} devices",
        per_client * CLIENTS as u64
    );
    rt.block_on(async {
        let open = throughput("all off", Mode::Open, per_client, &http).await;
        let creds = throughput("credentials + rules", Mode::Credentials, per_client, &http).await;
        let tls = throughput("credentials + rules + TLS", Mode::Tls, per_client, &http).await;
        let cost = |r: f64| (1.0 - r / open) * 100.0;
        println!("credentials + rules cost {:.1}%; with TLS {:.1}%", cost(creds), cost(tls));

        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        pki(&pki_dir);
        let server = start(&dir.path().join("data"), Some(&config(&pki_dir)));
        let before = rss_mib(server.child.id());
        let started = Instant::now();
        let secrets = register(&server, &http, "fleet-", devices).await;
        let registered = started.elapsed();
        let (hold_tx, hold_rx) = tokio::sync::watch::channel(());
        let connected = connect_all(server.mqtt, &secrets, &hold_rx).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let with = rss_mib(server.child.id());
        let status = common::status(&server, &http).await;
        println!(
            "{devices} devices registered in {:.1}s ({:.0}/s), connected with their secrets in {:.1}s ({:.0}/s); \
             roost holds {} connections in {with:.0} MiB resident ({before:.0} MiB before, {:.1} KiB per connection)",
            registered.as_secs_f64(),
            devices as f64 / registered.as_secs_f64(),
            connected.as_secs_f64(),
            devices as f64 / connected.as_secs_f64(),
            status["connections"],
            (with - before) * 1024.0 / devices as f64,
        );
        drop(hold_tx);
    });
}
