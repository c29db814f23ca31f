//! MQTT telemetry through the real `roost` binary into the schemaless databases: InfluxDB 1.x
//! (influxdb sink, v1 API), VictoriaMetrics (influxdb sink, v2 API) and a MongoDB-wire server
//! (mongodb sink), found through the ROOST_TEST_* URLs that `make test` sets.

mod common;

use std::time::{Duration, Instant};

use common::{publish_all, Roost};
use roost_testkit::{env_url, influxdb, unique};
use serde_json::json;

/// 2026-01-01T00:00:00Z in ms: every message carries `time` = this + its seq, so each device's
/// records have distinct times at VictoriaMetrics' and MongoDB's millisecond precision.
const T0_MS: i64 = 1_767_225_600_000;

/// 100,000 QoS 1 messages from four publishers go to three sinks at once; after a clean stop each
/// database holds exactly 100,000 records, 25,000 per device. (The MongoDB-wire server here is
/// pure Python, ~10k documents/s: its sink drains for about ten seconds after the publishers
/// finish, and the stop waits for it, up to 300 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_qos1_messages_land_exactly_once_in_influxdb_victoriametrics_and_mongodb() {
    let influx = env_url("ROOST_TEST_INFLUXDB_URL");
    let victoria = env_url("ROOST_TEST_VICTORIAMETRICS_URL");
    let mongo = env_url("ROOST_TEST_MONGODB_URL");
    let db = unique("e2e");
    let prefix = format!("{}_", unique("e2e"));
    // The stop waits for every sink to drain; on a loaded machine the MongoDB-wire server can
    // take longer than the default 30 s, which would fail the stop, not lose data.
    let config = format!(
        r#"
shutdown_timeout_secs = 300

[[sinks]]
name = "influx"
kind = "influxdb"
url = "{influx}"
api = "v1"
db = "{db}"

[[sinks]]
name = "victoria"
kind = "influxdb"
url = "{victoria}"
api = "v2"
org = "roost"
bucket = "roost"
measurement_prefix = "{prefix}"
string_fields = "reject"

[[sinks]]
name = "mongo"
kind = "mongodb"
url = "{mongo}"
database = "{db}"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(&config));
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..4 {
        let messages: Vec<_> = (0..25_000i64)
            .map(|i| {
                let payload = json!({"seq": i, "temp": 20.0 + i as f64 / 100.0, "time": T0_MS + i});
                (format!("devices/dev-{c}/env"), payload.to_string().into_bytes())
            })
            .collect();
        clients.push(tokio::spawn(publish_all(roost.mqtt, format!("e2e-pub-{c}"), messages)));
    }
    for c in clients {
        c.await.unwrap();
    }
    let published = started.elapsed();
    let status = roost.stop();
    assert!(status.success(), "roost exit: {status}");
    eprintln!("published 100000 in {published:?}, stopped (all sinks drained) after {:?}", started.elapsed());

    // InfluxDB 1.x: one count per device.
    let v = influxdb::query(&influx, &db, "SELECT count(seq) FROM env GROUP BY device", None).await;
    let series = v["results"][0]["series"].as_array().unwrap_or_else(|| panic!("{v}"));
    let counts: Vec<(String, i64)> = series
        .iter()
        .map(|s| (s["tags"]["device"].as_str().unwrap().to_owned(), s["values"][0][1].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, (0..4).map(|c| (format!("dev-{c}"), 25_000)).collect::<Vec<_>>(), "InfluxDB");

    // VictoriaMetrics: samples of <prefix>env_seq, polled until they are all searchable.
    let until = Instant::now() + Duration::from_secs(120);
    let selector = format!("{{__name__=\"{prefix}env_seq\"}}");
    loop {
        let series = roost_testkit::victoria::export(&victoria, &selector).await;
        let mut per: Vec<(String, usize)> = series
            .iter()
            .map(|v| {
                (v["metric"]["device"].as_str().unwrap().to_owned(), v["values"].as_array().unwrap().len())
            })
            .collect();
        per.sort();
        let total: usize = per.iter().map(|p| p.1).sum();
        if total >= 100_000 || Instant::now() > until {
            assert_eq!(
                per,
                (0..4).map(|c| (format!("dev-{c}"), 25_000)).collect::<Vec<_>>(),
                "VictoriaMetrics"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // MongoDB: documents in the `env` collection, per device.
    use mongodb::bson::{doc, Document};
    let coll =
        mongodb::Client::with_uri_str(&mongo).await.unwrap().database(&db).collection::<Document>("env");
    for c in 0..4 {
        let n = coll.count_documents(doc! {"meta.device": format!("dev-{c}")}).await.unwrap();
        assert_eq!(n, 25_000, "MongoDB dev-{c}");
    }
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 100_000);
}
