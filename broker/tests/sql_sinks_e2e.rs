//! MQTT to the SQL databases through the real `roost` binary: 100,000 QoS 1 messages, exactly
//! 100,000 rows. The databases come from `make test` (ROOST_TEST_* URLs).

mod common;

use common::{publish_all, Roost};
use mysql_async::prelude::Queryable;
use roost_testkit::{env_url, unique};
use serde_json::json;

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 25_000;

/// Publishes CLIENTS x PER_CLIENT messages `{"seq": n, "v": ...}` to devices/e2e-{c}/env and
/// stops roost cleanly.
async fn publish_and_stop(roost: Roost) {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let messages = (0..PER_CLIENT)
            .map(|i| {
                (
                    format!("devices/e2e-{c}/env"),
                    json!({"seq": i, "v": i as f64 / 4.0}).to_string().into_bytes(),
                )
            })
            .collect();
        tasks.push(tokio::spawn(publish_all(roost.mqtt, format!("e2e-{c}"), messages)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (status, log) = roost.stop_with_log();
    assert!(status.success(), "roost exit {status}:\n{log}");
}

async fn pg_counts(url: &str, schema: &str) -> (i64, i64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_typed(&format!("SELECT count(*), count(DISTINCT (device, seq)) FROM {schema}.env"), &[])
        .await
        .unwrap();
    (row[0].get(0), row[0].get(1))
}

async fn pg_e2e(kind: &str, url: &str, extra: &str) {
    let schema = unique("e2e");
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    drop(client);
    let _ = conn.await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[sinks]]\nname = \"db\"\nkind = \"{kind}\"\nurl = \"{url}\"\nschema = \"{schema}\"\n{extra}"
    );
    publish_and_stop(Roost::start(dir.path(), Some(&config))).await;
    let total = (CLIENTS * PER_CLIENT) as i64;
    assert_eq!(pg_counts(url, &schema).await, (total, total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_sink_receives_100k_mqtt_messages_exactly_once() {
    let url = env_url("ROOST_TEST_TIMESCALEDB_URL");
    pg_e2e("timescaledb", &url, "write_method = \"insert\"\npool_size = 1\nmax_statement_bytes = 32768\n")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_receives_100k_mqtt_messages_exactly_once() {
    let url = env_url("ROOST_TEST_POSTGRES_URL");
    pg_e2e("postgres", &url, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sink_receives_100k_mqtt_messages_exactly_once() {
    let base = env_url("ROOST_TEST_MYSQL_URL");
    let database = unique("e2e");
    let mut conn = mysql_async::Conn::from_url(&base).await.unwrap();
    conn.query_drop(format!("CREATE DATABASE {database}")).await.unwrap();
    let url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[[sinks]]\nname = \"db\"\nkind = \"mysql\"\nurl = \"{url}\"\n");
    publish_and_stop(Roost::start(dir.path(), Some(&config))).await;
    let (n, distinct): (i64, i64) = conn
        .query_first(format!("SELECT count(*), count(DISTINCT device, seq) FROM {database}.env"))
        .await
        .unwrap()
        .unwrap();
    let total = (CLIENTS * PER_CLIENT) as i64;
    assert_eq!((n, distinct), (total, total));
}
