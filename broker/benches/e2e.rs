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
use std::time::Instant;

use rumqttc::MqttOptions;

mod common;

use common::{publish, start, wait_for};
use roost_testkit::{examples, Roost};

const CLIENTS: usize = 8;

/// Client `c`'s options: client id `bench-c`, no credentials.
fn options(addr: SocketAddr) -> impl Fn(usize) -> MqttOptions + Clone + Send + 'static {
    move |c| MqttOptions::new(format!("bench-{c}"), addr.ip().to_string(), addr.port())
}

/// Publishes the load and waits until the server's first sink has written all of it; prints the
/// end-to-end rate.
async fn end_to_end(label: &str, server: &Roost, http: &reqwest::Client, per_client: u64) {
    let total = per_client * CLIENTS as u64;
    let started = Instant::now();
    let acked = publish(CLIENTS, per_client, options(server.mqtt)).await;
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
        let acked = publish(CLIENTS, per_client, options(server.mqtt)).await;
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
