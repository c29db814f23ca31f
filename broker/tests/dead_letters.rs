//! The dead-letter store through the real binary: what could not be mapped or written is kept
//! with its reason, listed, replayed and deleted with `roost deadletter`.

mod common;

use common::{publish_all, Roost};
use serde_json::Value;

fn list(roost: &Roost) -> Value {
    let (ok, out, err) = roost.cli(&["deadletter", "list", "--json", "--limit", "1000"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmappable_messages_are_kept_with_their_payload_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let messages = vec![
        ("devices/d1/env".to_string(), b"not json".to_vec()),
        ("devices/d1/env".to_string(), br#"{"t": 1}"#.to_vec()),
        ("devices/d2/env".to_string(), vec![0xff, 0x00, 0x01]),
    ];
    publish_all(roost.mqtt, "dl-1", messages).await;
    roost.wait_status("dead letters stored", |s| s["dead_letters"]["stored"] == 2).await;

    let doc = list(&roost);
    assert_eq!(doc["total"], 2, "{doc:#}");
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries[0]["source"], "pipeline:default");
    assert_eq!(entries[0]["topic"], "devices/d1/env");
    assert_eq!(entries[0]["client_id"], "dl-1");
    assert_eq!(entries[0]["payload"], "not json");
    assert!(entries[0]["reason"].as_str().unwrap().starts_with("payload is not JSON"), "{doc:#}");
    assert_eq!(entries[1]["payload_base64"], "/wAB");

    // The text listing names them too.
    let (ok, text, _) = roost.cli(&["deadletter", "list"]);
    assert!(
        ok && text.contains("2 dead letters stored") && text.contains("message on devices/d1/env"),
        "{text}"
    );

    // Replaying re-runs the mapping, which refuses them again: they come back as new entries.
    let (ok, out, err) = roost.cli(&["deadletter", "replay", "--source", "pipeline:default"]);
    assert!(ok, "{err}");
    assert!(out.contains("replayed 2"), "{out}");
    roost.wait_status("refused again", |s| s["dead_letters"]["stored"] == 4).await;
    let again = list(&roost);
    assert_eq!(again["total"], 2);
    let ids: Vec<i64> =
        again["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.iter().all(|id| *id > entries[1]["id"].as_i64().unwrap()), "{again:#}");

    // Deleting everything needs --all.
    let (ok, _, err) = roost.cli(&["deadletter", "delete"]);
    assert!(!ok && err.contains("all=true"), "{err}");
    let (ok, out, _) = roost.cli(&["deadletter", "delete", "--id", &ids[0].to_string()]);
    assert!(ok && out.contains("deleted 1"), "{out}");
    let (ok, out, _) = roost.cli(&["deadletter", "delete", "--all"]);
    assert!(ok && out.contains("deleted 1"), "{out}");
    assert_eq!(list(&roost)["total"], 0);
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_database_refuses_is_kept_with_its_sink_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    // A valid name for the mapping, but SQLite reserves sqlite_* tables.
    let messages = vec![
        ("devices/d1/env".to_string(), br#"{"measurement": "sqlite_stat9", "v": 1}"#.to_vec()),
        ("devices/d1/env".to_string(), br#"{"v": 2}"#.to_vec()),
    ];
    publish_all(roost.mqtt, "dl-2", messages).await;
    let s = roost.wait_status("rejected", |s| s["dead_letters"]["stored"] == 1).await;
    assert_eq!(s["sinks"][0]["records_rejected"], 1);
    let doc = list(&roost);
    let e = &doc["entries"][0];
    assert_eq!(e["source"], "sink:sqlite");
    assert_eq!(e["record"]["measurement"], "sqlite_stat9");
    assert_eq!(e["record"]["device"], "d1");
    assert_eq!(e["record"]["fields"]["v"], 1);
    assert!(e["reason"].as_str().unwrap().contains("reserved"), "{doc:#}");
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roost_dead_letters_total 1\n"), "{metrics}");
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_non_json_from_one_device_does_not_evict_records_or_other_devices_letters() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[deadletter]\nmax_entries = 500\nmax_per_device = 200\n";
    let roost = Roost::start(dir.path(), Some(config));
    // A record SQLite refuses (a reserved table name), and one bad message from a quiet device.
    let first = vec![
        ("devices/d1/env".to_string(), br#"{"measurement": "sqlite_stat9", "v": 1}"#.to_vec()),
        ("devices/d1/env".to_string(), b"quiet".to_vec()),
    ];
    publish_all(roost.mqtt, "dl-3", first).await;
    roost.wait_status("record rejected", |s| s["dead_letters"]["stored"] == 2).await;

    let flood: Vec<_> =
        (0..10_000).map(|i| ("devices/d9/env".to_string(), format!("junk {i}").into_bytes())).collect();
    publish_all(roost.mqtt, "dl-flood", flood).await;
    let s = roost.wait_status("flood stored", |s| s["dead_letters"]["stored"] == 10_002).await;

    let doc = list(&roost);
    let entries = doc["entries"].as_array().unwrap();
    let kept = doc["total"].as_u64().unwrap();
    // The flooding device keeps its newest 200; everything else stays.
    assert_eq!(kept, 202, "{s:#}");
    assert_eq!(s["dead_letters"]["dropped"].as_u64().unwrap() + kept, 10_002, "{s:#}");
    assert_eq!(s["dead_letters"]["over_bounds"], false);
    // The first two in whatever order the pipeline and the sink put them aside.
    let record =
        entries[..2].iter().find(|e| e["source"] == "sink:sqlite").expect("the sink: letter is kept");
    assert_eq!(record["record"]["measurement"], "sqlite_stat9");
    assert!(entries[..2].iter().any(|e| e["payload"] == "quiet"), "{doc:#}");
    assert_eq!(entries[2]["payload"], "junk 9800");
    assert_eq!(entries[201]["payload"], "junk 9999");
    assert!(roost.stop().success());
}
