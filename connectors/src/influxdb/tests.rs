//! Live tests of the HTTP answers the conformance suite does not reach, against the InfluxDB 1.x
//! of `ROOST_TEST_INFLUXDB_URL` (started by `scripts/services.sh` with request bodies capped at
//! 2 MiB).

use std::sync::Arc;

use roost_core::{FieldValue, Record};
use roost_testkit::{env_url, free_port, unique};
use serde_json::json;

use super::{InfluxConfig, InfluxSink};
use crate::{OpenSink, Sink, SinkContext, SinkError};

fn url() -> String {
    env_url("ROOST_TEST_INFLUXDB_URL")
}

async fn sink(options: serde_json::Value) -> InfluxSink {
    let config = serde_json::from_value::<InfluxConfig>(options).unwrap();
    let ctx = SinkContext { data_dir: std::env::temp_dir() };
    InfluxSink::open(config, "influxdb", &ctx).await.unwrap()
}

async fn count(db: &str, q: &str) -> i64 {
    let v = roost_testkit::influxdb::query(&url(), db, q, None).await;
    v["results"][0]["series"][0]["values"][0][1].as_i64().unwrap_or_else(|| panic!("{q}: {v}"))
}

fn batch(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut r = Record::new("big", format!("d{}", i % 10), 1_767_225_600_000_000_000 + i * 1000);
            r.fields.insert("v".into(), FieldValue::Float(i as f64 + 0.5));
            r.fields.insert("s".into(), FieldValue::Str("some text to make the line longer".into()));
            r
        })
        .collect()
}

#[tokio::test]
async fn a_missing_database_is_created_on_the_first_write() {
    let db = unique("created");
    let mut s = sink(json!({"url": url(), "db": db})).await;
    let out = s.write(Arc::new(batch(10))).await.unwrap();
    assert_eq!((out.written, out.rejected.len()), (10, 0));
    assert_eq!(count(&db, "SELECT count(v) FROM big").await, 10);
}

#[tokio::test]
async fn a_request_over_the_servers_body_limit_is_split_and_written() {
    // 30,000 lines are about 2.5 MB uncompressed: over the server's 2 MiB, under max_body_bytes.
    let db = unique("split");
    let mut s = sink(json!({"url": url(), "db": db, "gzip": false, "max_body_bytes": 8 << 20})).await;
    let out = s.write(Arc::new(batch(30_000))).await.unwrap();
    assert_eq!((out.written, out.rejected.len()), (30_000, 0));
    assert!(s.body_limit < 8 << 20, "later requests stay under the size that worked");
    assert_eq!(count(&db, "SELECT count(v) FROM big").await, 30_000);
}

#[tokio::test]
async fn the_v2_api_against_influxdb_1_is_a_configuration_error() {
    let mut s =
        sink(json!({"url": url(), "api": "v2", "org": "o", "bucket": "b", "token": "s3cret-token"})).await;
    let err = s.write(Arc::new(batch(1))).await.unwrap_err();
    assert!(matches!(err, SinkError::Config(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains("api"), "{msg}");
    assert!(!msg.contains("s3cret-token"), "{msg}");
}

#[tokio::test]
async fn no_server_is_unavailable_not_a_configuration_error() {
    let port = free_port();
    let mut s = sink(json!({"url": format!("http://127.0.0.1:{port}"), "db": "x", "password": "pa55word-xyz", "username": "u"})).await;
    let err = s.write(Arc::new(batch(1))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("pa55word"), "{err}");
}
