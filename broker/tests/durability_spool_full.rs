//! A spool that fills while its database is away, under each `spool.full` policy, with a real
//! PostgreSQL server of the test's own stopped and started again and a healthy SQLite sink in the
//! same pipeline:
//! - `block` (the default): once the spool is full, PUBACKs wait; nothing is lost, and when the
//!   database is back every message is stored once.
//! - `drop-oldest`: publishers are never held back; the oldest entries are dropped and counted,
//!   the newest are written, none twice, and the healthy sink keeps everything.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::durability::{check, pg_schema, pg_stored, sinks, sqlite_stored, two_sinks, wait_drained};
use common::Roost;
use roost_testkit::postgres::Postgres;
use roost_testkit::publisher::{Load, Publisher};
use serde_json::Value;
use tokio::sync::watch;

const MESSAGES: u64 = 20_000;
const CONNECTIONS: usize = 4;

/// A 1 MiB spool per sink in 64 KiB segments: 20,000 records of about 300 bytes overflow it.
fn config(pg: &str, schema: &str, full: &str) -> String {
    format!(
        "{}\n[spool]\nmax_bytes = 1048576\nsegment_bytes = 65536\nfull = \"{full}\"\n",
        two_sinks(pg, schema)
    )
}

/// The `pg` sink's spool in `GET /api/v1/sinks`.
async fn pg_spool(roost: &Roost) -> Value {
    let list = sinks(roost).await.expect("GET /api/v1/sinks");
    let pg = list.as_array().unwrap().iter().find(|s| s["name"] == "pg").expect("sink pg listed");
    pg["spool"].clone()
}

/// Starts Roost with PostgreSQL up, sees a first message written, then stops PostgreSQL.
async fn start_then_stop_postgres(server: &Postgres, full: &str) -> (tempfile::TempDir, Roost, String) {
    let pg = server.url("");
    let schema = pg_schema(&pg, "spoolfull").await;
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(&config(&pg, &schema, full)));
    let (_addr, addr_rx) = watch::channel(roost.mqtt);
    Publisher::start(Load::new("first", "warmup", 1, 1), addr_rx).finish(Duration::from_secs(30)).await;
    while pg_stored(&pg, &schema, "warmup").await.rows() == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
    (dir, roost, schema)
}

fn load() -> Load {
    let mut load = Load::new("full", "env", MESSAGES, CONNECTIONS);
    load.payload_bytes = 300;
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_holds_pubacks_back_once_the_spool_is_full_and_loses_nothing() {
    let server = Postgres::plain();
    let (dir, roost, schema) = start_then_stop_postgres(&server, "block").await;
    let (_addr, addr_rx) = watch::channel(roost.mqtt);
    let publisher = Publisher::start(load(), addr_rx);

    // The acknowledgements stop short of the load while the spool is full.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let acked = publisher.progress().acked.load(Relaxed);
        assert!(acked < MESSAGES, "all {MESSAGES} acknowledged with the spool full and the database away");
        if acked == last {
            break;
        }
        last = acked;
    }
    let spool = pg_spool(&roost).await;
    assert_eq!(spool["full"], true, "{spool:#}");
    assert_eq!(spool["dropped_total"], 0, "{spool:#}");
    assert!(spool["bytes"].as_u64().unwrap() <= 1 << 20, "{spool:#}");
    eprintln!("spool full with {last} of {MESSAGES} acknowledged: {spool}");

    server.start_again();
    let outcome = publisher.finish(Duration::from_secs(180)).await;
    wait_drained(&roost, Duration::from_secs(120)).await;
    let pg = pg_stored(&server.url(""), &schema, "env").await;
    let mut complaints = check("postgres", &outcome, &pg);
    complaints.extend(check("sqlite", &outcome, &sqlite_stored(&dir.path().join("roost.db"), "env")));
    assert_eq!(outcome.acked_count(), MESSAGES);
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
    assert_eq!((pg.rows(), pg.duplicates()), (MESSAGES, 0), "every message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_acknowledging_and_writes_the_newest_once() {
    let server = Postgres::plain();
    let (dir, roost, schema) = start_then_stop_postgres(&server, "drop-oldest").await;
    let (_addr, addr_rx) = watch::channel(roost.mqtt);
    // Every message is acknowledged although the spool holds only part of them.
    let outcome = Publisher::start(load(), addr_rx).finish(Duration::from_secs(180)).await;
    assert_eq!(outcome.acked_count(), MESSAGES);
    let spool = pg_spool(&roost).await;
    let dropped = spool["dropped_total"].as_u64().unwrap();
    assert!(dropped > 0 && spool["full"] == false, "{spool:#}");
    let dropped_records = spool["dropped_records_total"].as_u64().unwrap();
    assert!(spool["bytes"].as_u64().unwrap() <= 1 << 20, "{spool:#}");
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("roost_sink_spool_dropped_total{sink=\"pg\",")
            && l.ends_with(&format!(" {dropped}"))),
        "the drops are on /metrics"
    );

    server.start_again();
    wait_drained(&roost, Duration::from_secs(120)).await;
    let pg = pg_stored(&server.url(""), &schema, "env").await;
    eprintln!(
        "{dropped} spool entries ({dropped_records} records) dropped; postgres holds {} of {MESSAGES} rows",
        pg.rows()
    );
    assert_eq!(pg.duplicates(), 0, "none twice");
    // Every message is either written or counted as dropped (the first one went in before).
    assert_eq!(pg.rows() + dropped_records, MESSAGES, "written and dropped records add up");
    let status = roost.status().await;
    let backlog =
        status["sinks"].as_array().unwrap().iter().find(|s| s["name"] == "pg").unwrap()["backlog"].clone();
    assert_eq!(backlog, 0, "dropped records are not shown as waiting");
    // What is kept is the newest: each connection's last message.
    for c in 0..CONNECTIONS as u64 {
        let last = (c..MESSAGES).step_by(CONNECTIONS).last().unwrap();
        assert!(pg.0.contains_key(&last), "the newest message of connection {c} (seq {last}) is missing");
    }
    // The healthy sink's spool never filled: it has every message.
    let sqlite = sqlite_stored(&dir.path().join("roost.db"), "env");
    let complaints = check("sqlite", &outcome, &sqlite);
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}
