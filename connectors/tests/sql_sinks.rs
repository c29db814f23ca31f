//! What the SQL sinks promise beyond the conformance suite: the Grafana query each sink's doc
//! gives returns one series per device, TimescaleDB tables become hypertables, PostgreSQL tables
//! carry the (device, time DESC) index. Against the real databases (`make test` sets the URLs).

use std::error::Error;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use roost_connectors::{Sink, SinkContext};
use roost_core::{FieldValue, Record};
use roost_testkit::{env_url, unique};
use serde_json::{json, Value};
use tokio_postgres::types::{FromSql, Type};

/// 2026-01-01T00:00:00Z in seconds.
const START: i64 = 1_767_225_600;

/// The first ```sql block under the doc's "## Grafana" heading.
fn grafana_query(doc: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sinks").join(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    let section = &text[text.find("## Grafana").expect("a Grafana section")..];
    let start = section.find("```sql\n").expect("a sql block") + "```sql\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_owned()
}

/// Two devices, three points each inside [START, START + 1h), one point after it.
fn telemetry() -> Vec<Record> {
    let mut out = Vec::new();
    for (n, device) in ["kitchen", "garage"].iter().enumerate() {
        for i in 0..3i64 {
            let mut r = Record::new("env", *device, (START + 600 * i + n as i64) * 1_000_000_000);
            r.fields.insert("temp".into(), FieldValue::Float(20.0 + i as f64 + n as f64 / 10.0));
            out.push(r);
        }
    }
    let mut late = Record::new("env", "kitchen", (START + 7200) * 1_000_000_000);
    late.fields.insert("temp".into(), FieldValue::Float(99.0));
    out.push(late);
    out
}

/// (seconds, device, temp) that the Grafana query must return, in time order.
fn expected_series() -> Vec<(i64, String, f64)> {
    let mut rows: Vec<(i64, String, f64)> = telemetry()
        .iter()
        .filter(|r| r.time < (START + 3600) * 1_000_000_000)
        .map(|r| {
            let FieldValue::Float(t) = r.fields["temp"] else { unreachable!() };
            (r.time / 1_000_000_000, r.device.clone(), t)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

async fn write_all(kind: &str, options: Value, records: Vec<Record>) {
    let ctx = SinkContext { data_dir: std::env::temp_dir() };
    let mut sink: Box<dyn Sink> = roost_connectors::open(kind, &options, &ctx).await.unwrap();
    let n = records.len();
    let out = sink.write(Arc::new(records)).await.unwrap();
    assert_eq!((out.written, out.rejected.len()), (n, 0));
}

/// A `timestamptz` as seconds since the epoch.
struct Seconds(i64);

impl<'a> FromSql<'a> for Seconds {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let us = i64::from_be_bytes(raw.try_into()?);
        Ok(Seconds(us.div_euclid(1_000_000) + 946_684_800))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Writes the telemetry into a fresh schema and runs the documented query there, with
/// `$__timeFilter` expanded the way Grafana's PostgreSQL data source does.
async fn pg_grafana_query(kind: &str, url: &str, extra: Value) {
    let schema = unique("grafana");
    pg_client(url).await.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let mut options = json!({"url": url, "schema": schema});
    options.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    write_all(kind, options, telemetry()).await;

    let query = grafana_query("postgres.md")
        .replace("$__timeFilter(time)", "time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T00:59:59Z'");
    let mut client = pg_client(url).await;
    // SET LOCAL: PGlite shares one session between connections, so nothing may outlive the test.
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO {schema}")).await.unwrap();
    let rows = tx.query_typed(&query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e:?}"));
    tx.rollback().await.unwrap();
    let got: Vec<(i64, String, f64)> =
        rows.iter().map(|r| (r.get::<_, Seconds>("time").0, r.get("metric"), r.get("value"))).collect();
    assert_eq!(got, expected_series());
}

#[tokio::test]
async fn postgres_grafana_query_from_the_docs_returns_one_series_per_device() {
    let url = env_url("ROOST_TEST_POSTGRES_URL");
    pg_grafana_query("postgres", &url, json!({})).await;
}

#[tokio::test]
async fn timescaledb_grafana_query_from_the_docs_returns_one_series_per_device() {
    let url = env_url("ROOST_TEST_TIMESCALEDB_URL");
    pg_grafana_query(
        "timescaledb",
        &url,
        json!({"write_method": "insert", "pool_size": 1, "max_statement_bytes": 32768}),
    )
    .await;
}

#[tokio::test]
async fn mysql_grafana_query_from_the_docs_returns_one_series_per_device() {
    let base = env_url("ROOST_TEST_MYSQL_URL");
    let database = unique("grafana");
    let mut conn = mysql_async::Conn::from_url(&base).await.unwrap();
    conn.query_drop(format!("CREATE DATABASE {database}")).await.unwrap();
    let url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
    write_all("mysql", json!({"url": url}), telemetry()).await;

    // Grafana's MySQL data source sets the session to UTC and expands $__timeFilter to
    // FROM_UNIXTIME bounds.
    let query = grafana_query("mysql.md").replace(
        "$__timeFilter(time)",
        &format!("time BETWEEN FROM_UNIXTIME({START}) AND FROM_UNIXTIME({})", START + 3599),
    );
    let mut conn = mysql_async::Conn::from_url(&url).await.unwrap();
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let rows: Vec<(mysql_async::Value, String, f64)> =
        conn.exec(query.as_str(), ()).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    let got: Vec<(i64, String, f64)> = rows
        .into_iter()
        .map(|(t, m, v)| {
            let mysql_async::Value::Date(y, mo, d, h, mi, s, _) = t else { panic!("time is {t:?}") };
            assert_eq!((y, mo, d), (2026, 1, 1));
            (START + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s), m, v)
        })
        .collect();
    assert_eq!(got, expected_series());
}

#[tokio::test]
async fn timescaledb_tables_become_hypertables_with_the_configured_chunk_interval() {
    let url = env_url("ROOST_TEST_TIMESCALEDB_URL");
    let schema = unique("hyper");
    pg_client(&url).await.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let options = json!({"url": url, "schema": schema, "write_method": "insert", "pool_size": 1,
                         "max_statement_bytes": 32768, "chunk_interval": "6 hours"});
    write_all("timescaledb", options, telemetry()).await;
    let client = pg_client(&url).await;
    let rows = client
        .query_typed(
            "SELECT d.column_name::text, (extract(epoch FROM d.time_interval))::int8 \
             FROM timescaledb_information.dimensions d \
             WHERE d.hypertable_schema = $1 AND d.hypertable_name = 'env'",
            &[(&schema, Type::TEXT)],
        )
        .await
        .unwrap();
    let dims: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(dims, [("time".to_owned(), 6 * 3600)]);
}

#[tokio::test]
async fn postgres_tables_carry_a_device_time_index_and_stay_plain_without_timescaledb() {
    let url = env_url("ROOST_TEST_POSTGRES_URL");
    let schema = unique("index");
    pg_client(&url).await.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    write_all("postgres", json!({"url": url, "schema": schema}), telemetry()).await;
    let client = pg_client(&url).await;
    let defs: Vec<String> = client
        .query_typed(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'env'",
            &[(&schema, Type::TEXT)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(defs.len(), 1, "{defs:?}");
    assert!(defs[0].ends_with("USING btree (device, \"time\" DESC)"), "{defs:?}");
}
