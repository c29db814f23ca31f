//! `make bench`: end-to-end throughput of the real `roost` binary.
//!
//! Starts `roost serve` (release build) on free ports with a temporary data directory, publishes
//! from 8 concurrent rumqttc clients at QoS 1 (MQTT 3.1.1, 100 in flight each) with 100-byte JSON
//! payloads, and prints:
//! - end to end: messages/s from the first publish until every row is committed in SQLite;
//! - broker only: the same load through a pipeline with no sink (MQTT + ingest + JSON mapping);
//! - end to end into SQLite through a WebAssembly processor (the passthrough and
//!   celsius-to-fahrenheit examples, uploaded over the API), next to the same without one;
//! - end to end into PostgreSQL (binary COPY), when `ROOST_TEST_POSTGRES_URL` is set (`make bench`
//!   sets it).
//!
//! `ROOST_BENCH_MESSAGES` sets the message count per run (default 400000).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

mod common;

use common::start;
use roost_testkit::{examples, Roost};

const CLIENTS: usize = 8;

async fn status(server: &Roost, http: &reqwest::Client) -> Value {
    let url = format!("http://{}/api/v1/status", server.api);
    http.get(url).bearer_auth(&server.token).send().await.unwrap().json().await.unwrap()
}

/// A JSON payload of exactly 100 bytes.
fn payload(client: usize, seq: u64) -> Vec<u8> {
    let mut p = format!(
        r#"{{"seq":{seq},"client":{client},"temp":21.53,"hum":40.2,"pressure":1013.25,"ok":true,"label":""#
    );
    while p.len() < 98 {
        p.push('x');
    }
    p.push_str("\"}");
    assert_eq!(p.len(), 100);
    p.into_bytes()
}

/// Publishes `per_client` messages from each of `CLIENTS` clients; returns when all are acked.
async fn publish(addr: SocketAddr, per_client: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut opts = MqttOptions::new(format!("bench-{c}"), addr.ip().to_string(), addr.port());
            opts.set_inflight(100);
            opts.set_keep_alive(Duration::from_secs(60));
            let (client, mut eventloop) = AsyncClient::new(opts, 1000);
            let topic = format!("devices/bench-{c}/env");
            let sender = tokio::spawn(async move {
                for seq in 0..per_client {
                    client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload(c, seq)).await.unwrap();
                }
                client
            });
            let mut acked = 0;
            while acked < per_client {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("client {c}: {e}"),
                }
            }
            let client = sender.await.unwrap();
            let _ = client.disconnect().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// Polls the status until the number at `pointer` (a JSON pointer) reaches `want`; gives up,
/// showing the status, after two minutes without progress.
async fn wait_for(server: &Roost, http: &reqwest::Client, pointer: &str, want: u64) {
    let (mut last, mut since) = (None, Instant::now());
    loop {
        let doc = status(server, http).await;
        let now = doc.pointer(pointer).and_then(Value::as_u64);
        if now == Some(want) {
            return;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "stuck at {now:?} of {want} at {pointer}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes the load and waits until the server's first sink has written all of it; prints the
/// end-to-end rate.
async fn end_to_end(label: &str, server: &Roost, http: &reqwest::Client, per_client: u64) {
    let total = per_client * CLIENTS as u64;
    let started = Instant::now();
    let acked = publish(server.mqtt, per_client).await;
    wait_for(server, http, "/sinks/0/records_written", total).await;
    let committed = started.elapsed();
    println!(
        "end to end into {label:<34} {:>9.0} msg/s  ({total} rows committed in {:.2}s; publishers acked in {:.2}s)",
        total as f64 / committed.as_secs_f64(),
        committed.as_secs_f64(),
        acked.as_secs_f64()
    );
}

/// Rows in the `env` table of the SQLite sink in `data_dir`.
fn sqlite_rows(data_dir: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(data_dir.join("roost.db")).unwrap();
    conn.query_row("SELECT count(*) FROM env", [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

fn main() {
    let total: u64 =
        std::env::var("ROOST_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(400_000);
    let per_client = total / CLIENTS as u64;
    let total = per_client * CLIENTS as u64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::new();
    println!("roost end-to-end benchmark: {CLIENTS} clients, QoS 1, 100-byte JSON, {total} messages per run");

    rt.block_on(async {
        // Broker only: ingest + JSON mapping, no sink.
        let dir = tempfile::tempdir().unwrap();
        let server = start(
            dir.path(),
            Some("[[pipelines]]\nname = \"nosink\"\ntopics = [\"devices/#\"]\nsinks = []\n"),
        );
        let acked = publish(server.mqtt, per_client).await;
        wait_for(&server, &http, "/pipelines/0/messages", total).await;
        println!(
            "broker only (pipeline, no sink): {:>9.0} msg/s  ({total} acked in {:.2}s)",
            total as f64 / acked.as_secs_f64(),
            acked.as_secs_f64()
        );
        drop(server);

        // End to end into SQLite.
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), None);
        end_to_end("sqlite", &server, &http, per_client).await;
        assert_eq!(sqlite_rows(dir.path()), total, "rows in SQLite");
        drop(server);

        // End to end into SQLite through a processor.
        for example in ["passthrough", "celsius-to-fahrenheit"] {
            let dir = tempfile::tempdir().unwrap();
            let config = "[[pipelines]]\nname = \"p\"\ntopics = [\"devices/#\"]\nsinks = [\"sqlite\"]\nprocessor = \"bench\"\n";
            let server = start(dir.path(), Some(config));
            let resp = http
                .put(format!("http://{}/api/v1/processors/bench", server.api))
                .bearer_auth(&server.token)
                .body(examples::read(&examples::rust(example)))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
            end_to_end(&format!("sqlite + {example}"), &server, &http, per_client).await;
            assert_eq!(sqlite_rows(dir.path()), total, "rows in SQLite");
            drop(server);
        }

        // End to end into PostgreSQL.
        let Ok(url) = std::env::var("ROOST_TEST_POSTGRES_URL") else {
            println!("end to end into postgres: skipped, ROOST_TEST_POSTGRES_URL not set (run `make bench`)");
            return;
        };
        let schema = format!("bench_{}", std::process::id());
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[[sinks]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n"
        );
        let server = start(dir.path(), Some(&config));
        end_to_end("postgres (copy)", &server, &http, per_client).await;
        let rows: i64 =
            client.query_one(&format!("SELECT count(*) FROM {schema}.env"), &[]).await.unwrap().get(0);
        assert_eq!(rows as u64, total, "rows in PostgreSQL");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
        drop(client);
        let _ = conn.await;
    });
}
