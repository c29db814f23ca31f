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

/// An HTTP answer that closes the connection.
fn http(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// A server that gives every request the same answer.
async fn canned(answer: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer: &'static str = answer.leak();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request (headers and a small body) before answering.
                let mut buf = vec![0; 64 * 1024];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(200), conn.read(&mut buf)).await;
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn answers_a_retry_can_help_are_unavailable_the_others_are_not() {
    let retry = [
        http("408 Request Timeout", "", ""),
        http("429 Too Many Requests", "Retry-After: 3600\r\n", ""),
        http("502 Bad Gateway", "", "upstream down"),
    ];
    for answer in retry {
        let mut s = sink(json!({"url": canned(answer.clone()).await, "db": "x"})).await;
        let err = s.write(Arc::new(batch(3))).await.unwrap_err();
        assert!(err.is_retryable(), "{answer:?}: {err}");
    }
    for answer in [http("405 Method Not Allowed", "", ""), http("401 Unauthorized", "", "")] {
        let mut s = sink(json!({"url": canned(answer.clone()).await, "db": "x"})).await;
        let err = s.write(Arc::new(batch(3))).await.unwrap_err();
        assert!(matches!(err, SinkError::Config(_)), "{answer:?}: {err}");
    }
    // A 400 for every line (a type conflict) rejects the records, not the batch forever.
    let body = r#"{"error":"partial write: field type conflict: input field \"v\" on measurement \"big\" is type float, already exists as type integer dropped=3"}"#;
    let conflict = http("400 Bad Request", "Content-Type: application/json\r\n", body);
    let mut s = sink(json!({"url": canned(conflict).await, "db": "x", "gzip": false})).await;
    let out = s.write(Arc::new(batch(3))).await.unwrap();
    assert_eq!((out.written, out.rejected.len()), (0, 3), "{out:?}");
}
