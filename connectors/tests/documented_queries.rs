//! The Grafana queries in docs/sinks/influxdb.md and docs/sinks/mongodb.md, taken from the
//! docs as written and run against the real servers (InfluxDB 1.x, VictoriaMetrics, the
//! MongoDB-wire server) over records the sinks wrote. Grafana's macros (`$timeFilter`,
//! `$__interval`, `$__timeFrom`, `$__timeTo`) are replaced by the values Grafana would put there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_connectors::SinkContext;
use roost_core::{FieldValue, Record};
use roost_testkit::{env_url, influxdb, unique, victoria};
use serde_json::{json, Value};

/// 2026-01-01T00:00:00Z in ns.
const T0: i64 = 1_767_225_600_000_000_000;
const SEC: i64 = 1_000_000_000;

/// The last fenced block of `lang` in the doc.
fn doc_block(doc: &str, lang: &str) -> String {
    let text =
        std::fs::read_to_string(format!("{}/../docs/sinks/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = text.rfind(&format!("```{lang}\n")).unwrap_or_else(|| panic!("no {lang} block in {doc}"))
        + lang.len()
        + 4;
    let end = start + text[start..].find("```").unwrap();
    text[start..end].trim().to_owned()
}

/// Two devices; kitchen at 0 s, 10 s and 70 s, garage at 0 s.
fn records(kitchen: &str) -> Vec<Record> {
    let r = |device: &str, t: i64, temp: f64| {
        let mut r = Record::new("env", device, T0 + t * SEC);
        r.fields.insert("temp".into(), FieldValue::Float(temp));
        r
    };
    vec![r(kitchen, 0, 20.0), r(kitchen, 10, 21.0), r(kitchen, 70, 23.5), r("garage", 0, 5.0)]
}

async fn write(kind: &str, options: Value, batch: Vec<Record>) {
    let ctx = SinkContext { data_dir: std::env::temp_dir() };
    let mut sink = roost_connectors::open(kind, &options, &ctx).await.unwrap();
    let out = sink.write(Arc::new(batch)).await.unwrap();
    assert!(out.rejected.is_empty(), "{out:?}");
}

#[tokio::test]
async fn the_documented_influxql_query_gives_a_mean_per_device_per_interval() {
    let url = env_url("ROOST_TEST_INFLUXDB_URL");
    let db = unique("doc");
    write("influxdb", json!({"url": url, "db": db}), records("kitchen")).await;
    let q = doc_block("influxdb.md", "influxql")
        .replace("$timeFilter", "time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:05:00Z'")
        .replace("$__interval", "1m");
    let v = influxdb::query(&url, &db, &q, Some("s")).await;
    let series = v["results"][0]["series"].as_array().unwrap_or_else(|| panic!("{q}: {v}"));
    let got: Vec<(String, Value)> = series
        .iter()
        .map(|s| (s["tags"]["device"].as_str().unwrap().to_owned(), s["values"].clone()))
        .collect();
    let t0 = T0 / SEC;
    assert_eq!(
        got,
        [
            ("garage".to_owned(), json!([[t0, 5]])),
            ("kitchen".to_owned(), json!([[t0, 20.5], [t0 + 60, 23.5]])),
        ],
        "{q}"
    );
}

#[tokio::test]
async fn the_documented_promql_query_gives_the_temperature_per_device() {
    let url = env_url("ROOST_TEST_VICTORIAMETRICS_URL");
    // The documented query names `env_temp` with no prefix: this run's device is its own.
    let kitchen = unique("kitchen");
    write("influxdb", json!({"url": url, "api": "v2", "bucket": "roost"}), records(&kitchen)).await;
    let q = doc_block("influxdb.md", "promql");
    let at = (T0 + 80 * SEC) / SEC;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let v = victoria::query(&url, &q, at).await;
        let result = v["data"]["result"].as_array().unwrap_or_else(|| panic!("{q}: {v}")).clone();
        let mine: Vec<&Value> = result.iter().filter(|s| s["metric"]["device"] == json!(kitchen)).collect();
        if let [series] = mine.as_slice() {
            // The last sample within the lookback window: 23.5 at 70 s.
            assert_eq!(series["metric"], json!({"device": kitchen}), "{q}");
            assert_eq!(series["value"][1], json!("23.5"), "{q}");
            assert!(result.iter().any(|s| s["metric"]["device"] == json!("garage")), "{q}: {v}");
            return;
        }
        assert!(Instant::now() < until, "{q}: no series for {kitchen}: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_documented_mongodb_pipeline_gives_a_mean_per_device_per_minute() {
    use mongodb::bson::{self, Bson, DateTime, Document};
    let url = env_url("ROOST_TEST_MONGODB_URL");
    let db = unique("doc");
    write("mongodb", json!({"url": url, "database": db}), records("kitchen")).await;

    let pipeline: Value = serde_json::from_str(&doc_block("mongodb.md", "json")).unwrap();
    fn macros(b: Bson) -> Bson {
        match b {
            Bson::String(s) if s == "$__timeFrom" => Bson::DateTime(DateTime::from_millis(T0 / 1_000_000)),
            Bson::String(s) if s == "$__timeTo" => {
                Bson::DateTime(DateTime::from_millis((T0 + 300 * SEC) / 1_000_000))
            }
            Bson::Document(d) => Bson::Document(d.into_iter().map(|(k, v)| (k, macros(v))).collect()),
            Bson::Array(a) => Bson::Array(a.into_iter().map(macros).collect()),
            other => other,
        }
    }
    let stages: Vec<Document> = match macros(bson::to_bson(&pipeline).unwrap()) {
        Bson::Array(a) => a.into_iter().map(|s| s.as_document().unwrap().clone()).collect(),
        other => panic!("the documented pipeline is not an array: {other}"),
    };
    let coll = mongodb::Client::with_uri_str(&url).await.unwrap().database(&db).collection::<Document>("env");
    let mut cursor = coll.aggregate(stages).await.unwrap();
    let mut got = Vec::new();
    while cursor.advance().await.unwrap() {
        let d = cursor.deserialize_current().unwrap();
        let id = d.get_document("_id").unwrap();
        got.push((
            id.get_datetime("time").unwrap().timestamp_millis(),
            id.get_str("device").unwrap().to_owned(),
            d.get_f64("temp").unwrap(),
        ));
    }
    got.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let t0 = T0 / 1_000_000;
    assert_eq!(
        got,
        [(t0, "garage".into(), 5.0), (t0, "kitchen".into(), 20.5), (t0 + 60_000, "kitchen".into(), 23.5)]
    );
}
