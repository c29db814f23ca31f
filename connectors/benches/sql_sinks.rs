//! `make bench` (part of it): records/s into each SQL sink at batch sizes 100, 1,000 and 10,000,
//! one write in flight, as the broker's sink actor writes. Databases from the ROOST_TEST_* URLs
//! that `make bench` sets; a sink whose URL is missing is skipped with a note.
//!
//! `ROOST_BENCH_RECORDS` sets the records per measurement (default 200000; PGlite gets a tenth).

use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use roost_connectors::{Sink, SinkContext};
use roost_core::{FieldValue, Record};
use roost_testkit::unique;
use serde_json::{json, Value};

fn records(n: usize, offset: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let i = i + offset;
            let mut r =
                Record::new("bench", format!("dev-{}", i % 100), 1_767_225_600_000_000_000 + i as i64 * 1000);
            r.fields.insert("temp".into(), FieldValue::Float(20.0 + (i % 100) as f64 / 10.0));
            r.fields.insert("seq".into(), FieldValue::Int(i as i64));
            r.fields.insert("ok".into(), FieldValue::Bool(i.is_multiple_of(2)));
            r.fields.insert("label".into(), FieldValue::Str("room-kitchen-01".into()));
            r
        })
        .collect()
}

/// A fresh namespace for one run: sink options.
async fn namespace(kind: &str, url: &str) -> Value {
    match kind {
        "mysql" => {
            let db = unique("bench");
            let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
            conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
            json!({"url": format!("{}/{db}", url.rsplit_once('/').unwrap().0)})
        }
        "sqlite" => json!({"path": std::env::temp_dir().join(format!("{}.db", unique("bench")))}),
        _ => {
            let schema = unique("bench");
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
            drop(client);
            let _ = task.await;
            json!({"url": url, "schema": schema})
        }
    }
}

async fn run(label: &str, kind: &str, url: &str, extra: Value, total: usize) {
    for batch in [100usize, 1_000, 10_000] {
        let mut options = namespace(kind, url).await;
        options.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let ctx = SinkContext { data_dir: std::env::temp_dir() };
        let mut sink: Box<dyn Sink> = roost_connectors::open(kind, &options, &ctx).await.unwrap();
        // Warm up: create the table and columns outside the measurement.
        sink.write(Arc::new(records(10, total))).await.unwrap();
        let batches: Vec<Arc<Vec<Record>>> =
            (0..total / batch).map(|b| Arc::new(records(batch, b * batch))).collect();
        let started = Instant::now();
        for b in batches {
            let out = sink.write(b).await.unwrap();
            assert_eq!(out.written, batch, "{out:?}");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label:<26} batch {batch:>6}: {:>9.0} records/s  ({total} in {secs:.2}s)",
            total as f64 / secs
        );
    }
}

fn main() {
    let total: usize =
        std::env::var("ROOST_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("SQL sinks: records/s, one write in flight, 4 fields per record");
    rt.block_on(async {
        run("sqlite", "sqlite", "", json!({}), total).await;
        let url = |var: &str| std::env::var(var).ok();
        match url("ROOST_TEST_POSTGRES_URL") {
            Some(u) => {
                run("postgres (copy)", "postgres", &u, json!({}), total).await;
                run("postgres (insert)", "postgres", &u, json!({"write_method": "insert"}), total).await;
            }
            None => println!("postgres: skipped, ROOST_TEST_POSTGRES_URL not set (run `make bench`)"),
        }
        match url("ROOST_TEST_MYSQL_URL") {
            Some(u) => run("mysql (mariadb)", "mysql", &u, json!({}), total).await,
            None => println!("mysql: skipped, ROOST_TEST_MYSQL_URL not set (run `make bench`)"),
        }
        match url("ROOST_TEST_TIMESCALEDB_URL") {
            Some(u) => {
                let pglite = json!({"write_method": "insert", "pool_size": 1, "max_statement_bytes": 32768});
                run("timescaledb (pglite)", "timescaledb", &u, pglite, total / 10).await;
            }
            None => println!("timescaledb: skipped, ROOST_TEST_TIMESCALEDB_URL not set (run `make bench`)"),
        }
    });
}
