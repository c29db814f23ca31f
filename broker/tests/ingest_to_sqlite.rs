//! MQTT telemetry into SQLite through the real `roost` binary, with real clients.

mod common;

use common::{count, mosquitto_pub, publish_all, Roost};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_qos1_messages_from_four_clients_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let mut clients = Vec::new();
    for c in 0..4 {
        let messages: Vec<_> = (0..2500)
            .map(|i| {
                let payload = json!({"seq": i, "client": c, "temp": 20.0 + i as f64 / 100.0});
                (format!("devices/dev-{c}/env"), payload.to_string().into_bytes())
            })
            .collect();
        clients.push(tokio::spawn(publish_all(roost.mqtt, format!("pub-{c}"), messages)));
    }
    for c in clients {
        c.await.unwrap();
    }
    let db_path = roost.dir.join("roost.db");
    let status = roost.stop();
    assert!(status.success(), "roost exit: {status}");

    let conn = rusqlite::Connection::open(db_path).unwrap();
    assert_eq!(count(&conn, "env"), 10_000);
    for c in 0..4 {
        let (n, distinct, sum, temp_sum): (i64, i64, i64, f64) = conn
            .query_row(
                "SELECT count(*), count(DISTINCT seq), sum(seq), sum(temp) FROM env WHERE device = ?1",
                [format!("dev-{c}")],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!((n, distinct, sum), (2500, 2500, (0..2500).sum::<i64>()), "device dev-{c}");
        assert!((temp_sum - (0..2500).map(|i| 20.0 + i as f64 / 100.0).sum::<f64>()).abs() < 1e-6);
        let clients: i64 = conn
            .query_row(
                "SELECT count(*) FROM env WHERE device = ?1 AND client = ?2",
                rusqlite::params![format!("dev-{c}"), c],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(clients, 2500);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_messages_over_mqtt_311_and_5_land() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let lines =
        |v: &str| (0..5000).map(|i| format!("{{\"seq\":{i},\"proto\":\"{v}\"}}\n")).collect::<String>();
    mosquitto_pub(
        roost.mqtt,
        &["-V", "mqttv311", "-q", "1", "-t", "devices/m311/power", "-l"],
        &lines("3.1.1"),
    );
    mosquitto_pub(roost.mqtt, &["-V", "mqttv5", "-q", "1", "-t", "devices/m5/power", "-l"], &lines("5"));
    // MQTT 5 user properties travel too (and do not disturb the mapping).
    mosquitto_pub(
        roost.mqtt,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "devices/m5/power",
            "-D",
            "publish",
            "user-property",
            "site",
            "lab",
            "-m",
            r#"{"seq":5000,"proto":"5"}"#,
        ],
        "",
    );
    let db_path = roost.dir.join("roost.db");
    assert!(roost.stop().success());

    let conn = rusqlite::Connection::open(db_path).unwrap();
    let per: Vec<(String, i64, i64)> = conn
        .prepare("SELECT device, count(*), count(DISTINCT seq) FROM power GROUP BY device ORDER BY device")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(per, [("m311".into(), 5000, 5000), ("m5".into(), 5001, 5001)]);
    let proto: String =
        conn.query_row("SELECT proto FROM power WHERE device='m5' LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(proto, "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_platform_payload_lands_in_its_measurement_with_its_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[[pipelines]]
name = "legacy"
topics = ["myt/#", "devices/#"]
sinks = ["sqlite"]
"#;
    let roost = Roost::start(dir.path(), Some(config));
    let legacy = json!({"measurement": "weather", "sensor": "station-7", "data": {"temp": 3.5, "wind": {"speed": 12}}});
    publish_all(roost.mqtt, "old-gateway", vec![("myt/upload".into(), legacy.to_string().into_bytes())])
        .await;
    let conn_path = roost.dir.join("roost.db");
    assert!(roost.stop().success());
    let conn = rusqlite::Connection::open(conn_path).unwrap();
    let row: (String, f64, i64) = conn
        .query_row("SELECT device, temp, wind_speed FROM weather", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(row, ("station-7".into(), 3.5, 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_counted_and_the_messages_around_them_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"\"just a string\"".to_vec(),
        format!(r#"{{"s":"{}"}}"#, "x".repeat(1_000_000)).into_bytes(),
        "x".repeat(1_000_000).into_bytes(),
        br#"{"a\"; DROP TABLE env; --": 1}"#.to_vec(),
        br#"{"ok": 1, "bad name": 2}"#.to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{}".to_vec(),
    ];
    let mut messages = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        messages.push(("devices/d1/env".to_string(), json!({"seq": i}).to_string().into_bytes()));
        messages.push(("devices/d1/env".to_string(), b.clone()));
    }
    messages.push(("devices/d1/env".to_string(), json!({"seq": bad.len()}).to_string().into_bytes()));
    publish_all(roost.mqtt, "mixed", messages).await;

    let status = roost.wait_status("all messages processed", |s| s["pipelines"][0]["messages"] == 19).await;
    assert_eq!(status["pipelines"][0]["errors"], 9, "{status:#}");
    assert_eq!(status["messages_in"], 19);
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roost_pipeline_mapping_errors_total{pipeline=\"default\"} 9\n"), "{metrics}");

    let db_path = roost.dir.join("roost.db");
    assert!(roost.stop().success());
    let conn = rusqlite::Connection::open(db_path).unwrap();
    let seqs: Vec<i64> = conn
        .prepare("SELECT seq FROM env ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(seqs, (0..=9).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_data_dir_keeps_data_and_takes_more() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let token = roost.token.clone();
    let batch = |from: i64| {
        (from..from + 100)
            .map(|i| ("devices/d/m".to_string(), json!({"i": i}).to_string().into_bytes()))
            .collect()
    };
    publish_all(roost.mqtt, "first", batch(0)).await;
    assert!(roost.stop().success());

    let roost = Roost::start(dir.path(), None);
    assert_eq!(roost.token, token, "the admin token survives a restart");
    publish_all(roost.mqtt, "second", batch(100)).await;
    // A new field after restart adds a column to the existing table.
    publish_all(roost.mqtt, "third", vec![("devices/d/m".into(), br#"{"i": 200, "extra": true}"#.to_vec())])
        .await;
    let conn = roost.db();
    assert!(roost.stop().success());
    assert_eq!(count(&conn, "m"), 201);
    let distinct: i64 = conn.query_row("SELECT count(DISTINCT i) FROM m", [], |r| r.get(0)).unwrap();
    assert_eq!(distinct, 201);
    let extra: i64 = conn.query_row("SELECT extra FROM m WHERE i = 200", [], |r| r.get(0)).unwrap();
    assert_eq!(extra, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_clients_publish_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let publishers: Vec<_> = (0..3)
        .map(|c| {
            tokio::spawn(common::publish_until_disconnected(
                roost.mqtt,
                format!("busy-{c}"),
                format!("devices/busy-{c}/env"),
            ))
        })
        .collect();
    // Written records were spooled first, and their PUBACKs sent then: waiting for messages_in
    // alone would race the acknowledgements still held back for the disk (up to the clients'
    // in-flight windows).
    roost.wait_status("traffic flowing", |s| s["sinks"][0]["records_written"].as_u64().unwrap() > 3000).await;
    let db_path = roost.dir.join("roost.db");
    let status = roost.stop();
    assert!(status.success(), "roost exit: {status}");

    let conn = rusqlite::Connection::open(db_path).unwrap();
    let mut total_acked = 0;
    for (c, publisher) in publishers.into_iter().enumerate() {
        let acked = publisher.await.unwrap();
        assert!(!acked.is_empty(), "publisher {c} got no PUBACK");
        total_acked += acked.len();
        let stored: std::collections::HashSet<u64> = conn
            .prepare("SELECT seq FROM env WHERE device = ?1")
            .unwrap()
            .query_map([format!("busy-{c}")], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|s| s.unwrap() as u64)
            .collect();
        let missing: Vec<u64> = acked.iter().copied().filter(|s| !stored.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "publisher {c}: {} acknowledged messages missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    assert!(total_acked > 3000);
}
