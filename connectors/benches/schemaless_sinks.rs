//! `make bench` (part of it): records/s into the influxdb sink (VictoriaMetrics through the v2
//! API, InfluxDB 1.x through v1) and the mongodb sink, at batch sizes 1,000 and 10,000, one
//! write in flight as the broker's sink actor writes; and what encoding costs per record
//! (line protocol; BSON document with its content-hash `_id`), without a server.
//!
//! Servers from `ROOST_TEST_VICTORIAMETRICS_URL`, `ROOST_TEST_INFLUXDB_URL` and
//! `ROOST_TEST_MONGODB_URL`; a missing one is skipped with a note. `ROOST_BENCH_RECORDS` sets the
//! records per run (default 200000; the MongoDB-wire server here, pure Python, gets a tenth).

use std::sync::Arc;
use std::time::Instant;

use roost_connectors::influxdb::{schema::encode_line, StringFields};
use roost_connectors::SinkContext;
use roost_core::{FieldValue, Record};
use roost_testkit::unique;
use serde_json::{json, Value};

fn records(n: usize, offset: usize, strings: bool) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let i = i + offset;
            let mut r = Record::new(
                "bench",
                format!("dev-{}", i % 100),
                1_767_225_600_000_000_000 + i as i64 * 1_000_000,
            );
            r.tags.insert("site".into(), "plant-1".into());
            r.fields.insert("temp".into(), FieldValue::Float(20.0 + (i % 100) as f64 / 10.0));
            r.fields.insert("seq".into(), FieldValue::Int(i as i64));
            r.fields.insert("ok".into(), FieldValue::Bool(i.is_multiple_of(2)));
            if strings {
                r.fields.insert("label".into(), FieldValue::Str("room-kitchen-01".into()));
            }
            r
        })
        .collect()
}

async fn run(label: &str, kind: &str, options: impl Fn() -> Value, total: usize, strings: bool) {
    for batch in [1_000usize, 10_000] {
        let ctx = SinkContext { data_dir: std::env::temp_dir() };
        let mut sink = roost_connectors::open(kind, &options(), &ctx).await.unwrap();
        let batches: Vec<Arc<Vec<Record>>> =
            (0..total / batch).map(|b| Arc::new(records(batch, b * batch, strings))).collect();
        let started = Instant::now();
        let mut written = 0;
        for b in batches {
            let out = sink.write(b).await.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(out.rejected.is_empty(), "{label}: {:?}", out.rejected.first());
            written += out.written;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label:<34} batch {batch:>6}: {written:>7} records in {secs:>6.2} s = {:>9.0} records/s",
            written as f64 / secs
        );
    }
}

fn encode_costs() {
    let batch = records(100_000, 0, true);
    let started = Instant::now();
    let mut buf = Vec::with_capacity(batch.len() * 100);
    for r in &batch {
        encode_line(r, "", StringFields::Write, &mut buf).unwrap();
    }
    let ns = started.elapsed().as_nanos() as f64 / batch.len() as f64;
    println!(
        "encode, line protocol                       {ns:>6.0} ns/record ({} bytes/record)",
        buf.len() / batch.len()
    );
    let started = Instant::now();
    let docs: Vec<_> =
        batch.iter().map(|r| roost_connectors::mongodb::schema::document(r).unwrap()).collect();
    let ns = started.elapsed().as_nanos() as f64 / batch.len() as f64;
    println!("encode, BSON document with its _id hash     {ns:>6.0} ns/record ({} documents)", docs.len());
}

#[tokio::main]
async fn main() {
    let total: usize =
        std::env::var("ROOST_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    encode_costs();
    match std::env::var("ROOST_TEST_VICTORIAMETRICS_URL") {
        Ok(url) => {
            let options = || json!({"url": url, "api": "v2", "bucket": "bench", "measurement_prefix": unique("bench") + "_"});
            run("influxdb (v2) -> VictoriaMetrics", "influxdb", options, total, false).await
        }
        Err(_) => println!("ROOST_TEST_VICTORIAMETRICS_URL not set: VictoriaMetrics skipped"),
    }
    match std::env::var("ROOST_TEST_INFLUXDB_URL") {
        Ok(url) => {
            let options = || json!({"url": url, "api": "v1", "db": unique("bench")});
            run("influxdb (v1) -> InfluxDB 1.x", "influxdb", options, total, true).await
        }
        Err(_) => println!("ROOST_TEST_INFLUXDB_URL not set: InfluxDB skipped"),
    }
    match std::env::var("ROOST_TEST_MONGODB_URL") {
        Ok(url) => {
            let options = || json!({"url": url, "database": unique("bench")});
            run("mongodb -> SecantusDB (pure Python)", "mongodb", options, (total / 10).max(10_000), true)
                .await
        }
        Err(_) => println!("ROOST_TEST_MONGODB_URL not set: MongoDB skipped"),
    }
}
