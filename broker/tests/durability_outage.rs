//! PostgreSQL away for a minute while 50,000 QoS 1 messages are published into a pipeline with
//! two sinks, PostgreSQL and SQLite: the healthy SQLite sink keeps writing through the outage,
//! and once PostgreSQL is back it holds all 50,000 rows, none twice.
//!
//! PostgreSQL is a server of the test's own (stopping the shared one would break the tests running
//! next to this one), stopped with `pg_ctl stop` and started again. The outage lasts
//! `ROOST_TEST_OUTAGE_SECS` seconds (default 60, as the issue asks); the publishers are paced so
//! that they publish all through it.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::durability::{check, pg_schema, pg_stored, sqlite_stored, two_sinks, wait_drained};
use common::Roost;
use roost_testkit::postgres::Postgres;
use roost_testkit::publisher::{Load, Publisher};
use tokio::sync::watch;

const MESSAGES: u64 = 50_000;
const CONNECTIONS: usize = 8;
/// The SQLite row count is read up to this many times during the outage, at least 2 s apart; it
/// must grow between reads.
const SAMPLES: u32 = 5;

fn outage() -> Duration {
    let secs = std::env::var("ROOST_TEST_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_for_a_minute_loses_nothing_and_does_not_stall_the_healthy_sink() {
    let server = Postgres::plain();
    let pg = server.url("");
    let schema = pg_schema(&pg, "outage").await;
    let config = two_sinks(&pg, &schema);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("roost.db");
    let roost = Roost::start(dir.path(), Some(&config));
    let outage = outage();
    let mut load = Load::new("outage", "env", MESSAGES, CONNECTIONS);
    // All of it published within the first three quarters of the outage.
    load.rate = Some(MESSAGES as f64 / (outage.as_secs_f64() * 0.75));
    let (_addr, addr_rx) = watch::channel(roost.mqtt);
    let publisher = Publisher::start(load, addr_rx);

    // Both sinks write, then PostgreSQL goes away.
    while pg_stored(&pg, &schema, "env").await.rows() == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
    let started = Instant::now();
    let samples = (outage.as_secs() as u32 / 2).clamp(1, SAMPLES);
    let mut during = vec![sqlite_stored(&sqlite, "env").rows()];
    for i in 1..=samples {
        tokio::time::sleep_until((started + outage * i / (samples + 1)).into()).await;
        during.push(sqlite_stored(&sqlite, "env").rows());
    }
    tokio::time::sleep_until((started + outage).into()).await;
    let acked_in_outage = publisher.progress().acked.load(Relaxed);
    server.start_again();
    let pg_after_outage = pg_stored(&pg, &schema, "env").await.rows();
    eprintln!(
        "outage of {outage:?}: sqlite rows read during it {during:?}; {acked_in_outage} acknowledged by its end; \
         postgres held {pg_after_outage} rows when it came back"
    );

    let outcome = publisher.finish(Duration::from_secs(240)).await;
    let drain = Instant::now();
    wait_drained(&roost, Duration::from_secs(180)).await;
    eprintln!("drained within {:?} of postgres coming back", drain.elapsed());
    let pg_rows = pg_stored(&pg, &schema, "env").await;
    let mut complaints = check("postgres", &outcome, &pg_rows);
    complaints.extend(check("sqlite", &outcome, &sqlite_stored(&sqlite, "env")));
    if pg_rows.rows() != MESSAGES || pg_rows.duplicates() != 0 {
        complaints.push(format!(
            "postgres: {} rows, {} seqs twice; want all {MESSAGES}, none twice",
            pg_rows.rows(),
            pg_rows.duplicates()
        ));
    }
    if let Some(i) = (1..during.len()).find(|i| during[*i] <= during[*i - 1]) {
        complaints.push(format!(
            "sqlite stopped growing while postgres was away: {} rows at read {}, {} at read {i} ({during:?})",
            during[i - 1],
            i - 1,
            during[i]
        ));
    }
    let (_, log) = roost.stop_with_log();
    let warnings: Vec<_> =
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(30).collect();
    assert!(
        complaints.is_empty(),
        "{}\nwarnings in the log:\n{}",
        complaints.join("\n"),
        warnings.join("\n")
    );
}
