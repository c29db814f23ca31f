//! Who may connect, and what happens when the database is away: against the real binary.

mod common;

use std::time::Duration;

use common::{count, publish_all, Roost};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
use serde_json::json;

/// Connects without credentials and returns the CONNACK code (or the error).
async fn connect_anonymously(port: u16) -> Result<ConnectReturnCode, String> {
    let opts = MqttOptions::new("anon", "127.0.0.1", port);
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return Ok(ack.code),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no CONNACK".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listener_refuses_anonymous_clients_unless_allowed() {
    // 0.0.0.0 is not a loopback listener; the client still connects over 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start_with(dir.path(), None, "0.0.0.0:0");
    let refused = connect_anonymously(roost.mqtt.port()).await;
    assert!(
        matches!(&refused, Err(e) if e.contains("NotAuthorized"))
            || refused == Ok(ConnectReturnCode::NotAuthorized),
        "{refused:?}"
    );
    assert!(roost.stop().success());

    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start_with(dir.path(), Some("[mqtt]\nallow_anonymous = true\n"), "0.0.0.0:0");
    assert_eq!(connect_anonymously(roost.mqtt.port()).await, Ok(ConnectReturnCode::Success));
    let log = roost.log_text();
    assert!(log.contains("allow_anonymous = true on a non-loopback listener"), "{log}");
    assert!(roost.stop().success());

    // The loopback default accepts them.
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    assert_eq!(connect_anonymously(roost.mqtt.port()).await, Ok(ConnectReturnCode::Success));
    assert!(roost.stop().success());
}

const SHORT_LOCK_WAIT: &str = r#"
shutdown_timeout_secs = 3

[[sinks]]
name = "sqlite"
kind = "sqlite"
busy_timeout_ms = 20
linger_ms = 20
"#;

/// Takes SQLite's write lock on the data directory's database and holds it until dropped.
fn lock_database(dir: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("roost.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS held(x)")
        .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(SHORT_LOCK_WAIT));
    let messages = |from: i64| {
        (from..from + 500)
            .map(|i| ("devices/d/env".to_string(), json!({"i": i}).to_string().into_bytes()))
            .collect()
    };
    publish_all(roost.mqtt, "before", messages(0)).await;
    roost.wait_status("first rows written", |s| s["sinks"][0]["records_written"] == 500).await;

    let lock = lock_database(dir.path());
    publish_all(roost.mqtt, "during", messages(500)).await;
    let s = roost
        .wait_status("writes failing while locked", |s| s["sinks"][0]["write_errors"].as_u64() > Some(1))
        .await;
    assert_eq!(s["sinks"][0]["backlog"], 500, "{s:#}");
    assert!(s["sinks"][0]["last_error"].as_str().unwrap().contains("locked"), "{s:#}");
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("roost_sink_backlog_records{sink=\"sqlite\",kind=\"sqlite\"} 500\n"),
        "{metrics}"
    );

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let s = roost.wait_status("backlog written", |s| s["sinks"][0]["records_written"] == 1000).await;
    assert_eq!(s["sinks"][0]["backlog"], 0);
    assert_eq!(s["sinks"][0]["last_error"], serde_json::Value::Null);
    let conn = roost.db();
    assert!(roost.stop().success());
    assert_eq!(count(&conn, "env"), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_stop_cannot_flush_stay_in_the_spool_and_land_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(SHORT_LOCK_WAIT));
    let lock = lock_database(dir.path());
    let messages =
        (0..25).map(|i| ("devices/d/env".to_string(), json!({"i": i}).to_string().into_bytes())).collect();
    publish_all(roost.mqtt, "stuck", messages).await;
    roost.wait_status("writes failing", |s| s["sinks"][0]["write_errors"].as_u64() > Some(0)).await;
    let status = roost.status().await;
    assert_eq!(status["sinks"][0]["retrying"], true, "{status}");
    assert!(status["sinks"][0]["spool"]["entries"].as_u64() > Some(0), "{status}");
    let (status, log) = roost.stop_with_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("(25 records of this run) are not written yet"), "{log}");
    assert!(log.contains("written when Roost starts again"), "{log}");

    // The database is back: the next start writes the 25 records from the spool, with no
    // replay and no dead letters.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let roost = Roost::start(dir.path(), Some(SHORT_LOCK_WAIT));
    let status = roost.wait_status("spool drained", |s| s["sinks"][0]["records_written"] == 25).await;
    assert_eq!(status["sinks"][0]["spool"]["entries"], 0, "{status}");
    assert_eq!(status["dead_letters"]["stored"], 0, "{status}");
    let conn = roost.db();
    assert!(roost.stop().success());
    let got: Vec<i64> = conn
        .prepare("SELECT i FROM env ORDER BY i")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..25).collect::<Vec<i64>>());
}
