//! Retained messages with real clients against the real `roost`: boards' statuses seen at once
//! by a late watcher and after a restart, the limits of `[mqtt.retain]`, clearing, and a damaged
//! file.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::boards::{agents, wait_boards};
use common::{mosquitto_pub, Roost};
use serde_json::Value;

/// What a new `mosquitto_sub` of `filter` gets at once: (topic, payload) of the retained
/// messages, sorted by topic. It waits 2 s for more than `expected` to be sure there are no more.
fn retained(addr: SocketAddr, filter: &str, expected: usize) -> Vec<(String, String)> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-t", filter, "-v"])
        .args(["-C", &(expected + 1).to_string(), "-W", "2"])
        .output()
        .expect("mosquitto_sub not found: run `make services`");
    let mut got: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (t, p) = l.split_once(' ').unwrap_or((l, ""));
            (t.to_owned(), p.to_owned())
        })
        .collect();
    got.sort();
    got
}

fn states(statuses: &[(String, String)]) -> Vec<(String, String)> {
    statuses
        .iter()
        .map(|(topic, payload)| {
            let status: Value = serde_json::from_str(payload).unwrap();
            (topic.clone(), status["state"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn status_topics(names: &[&str], state: &str) -> Vec<(String, String)> {
    names.iter().map(|n| (format!("roost/boards/{n}/status"), state.to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_watcher_sees_every_boards_status_at_once_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(&dir.path().join("data"), None);
    let names = ["b-1", "b-2", "b-3"];
    let mut boards = agents(&roost, dir.path(), &names, &[]);
    wait_boards(&roost, &names, "idle").await;
    let seen = retained(roost.mqtt, "roost/boards/+/status", 3);
    assert_eq!(states(&seen), status_topics(&names, "idle"));

    // The boards vanish: their retained wills say so.
    for b in &mut boards {
        b.kill();
    }
    wait_boards(&roost, &names, "offline").await;
    assert_eq!(states(&retained(roost.mqtt, "roost/boards/+/status", 3)), status_topics(&names, "offline"));

    // Roost restarts (the boards are still away): the statuses are still there.
    let (data, addr) = (roost.dir.clone(), roost.mqtt.to_string());
    assert!(roost.stop().success());
    let roost = Roost::start_with(&data, None, &addr);
    assert_eq!(states(&retained(roost.mqtt, "roost/boards/+/status", 3)), status_topics(&names, "offline"));
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_replaced_cleared_and_held_within_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some("[mqtt.retain]\nmax_messages = 2\nmax_bytes = 100\n"));
    let publish = |topic: &str, payload: &str, version: &str| {
        let what = if payload.is_empty() { "-n" } else { "-s" };
        mosquitto_pub(roost.mqtt, &["-V", version, "-q", "1", "-r", "-t", topic, what], payload)
    };
    publish("site/a", "a1", "mqttv311");
    publish("site/b", "b1", "5");
    publish("site/c", "c1", "mqttv311"); // over max_messages: delivered, not retained
    let pairs =
        |v: &[(&str, &str)]| v.iter().map(|(t, p)| (t.to_string(), p.to_string())).collect::<Vec<_>>();
    assert_eq!(retained(roost.mqtt, "site/#", 2), pairs(&[("site/a", "a1"), ("site/b", "b1")]));
    publish("site/a", "a2", "5"); // replacing is allowed at the limit
    publish("site/b", &"x".repeat(120), "mqttv311"); // over max_bytes: b1 stays
    assert_eq!(retained(roost.mqtt, "site/#", 2), pairs(&[("site/a", "a2"), ("site/b", "b1")]));
    publish("site/a", "", "mqttv311"); // an empty retained publish clears the topic
    publish("site/c", "c2", "5"); // and makes room
    assert_eq!(retained(roost.mqtt, "site/#", 2), pairs(&[("site/b", "b1"), ("site/c", "c2")]));
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    for line in [
        "roost_mqtt_retained_messages 2",
        "roost_mqtt_retained_bytes 4",
        "roost_mqtt_retained_refused_total 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_retained_file_is_set_aside_and_roost_starts_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    mosquitto_pub(roost.mqtt, &["-q", "1", "-r", "-t", "keep/me", "-s"], "v");
    let (data, addr) = (roost.dir.clone(), roost.mqtt.to_string());
    assert!(roost.stop().success());
    let file = data.join("mqtt/retained");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&file, &bytes).unwrap();

    let roost = Roost::start_with(&data, None, &addr);
    assert!(retained(roost.mqtt, "keep/#", 0).is_empty());
    assert!(data.join("mqtt/retained.unreadable").exists(), "the damaged file is kept for a look");
    assert!(roost.log_text().contains("retained messages could not be read"), "{}", roost.log_text());
    // The broker works, and keeps new retained messages.
    mosquitto_pub(roost.mqtt, &["-q", "1", "-r", "-t", "keep/new", "-s"], "w");
    assert_eq!(retained(roost.mqtt, "keep/#", 1), [("keep/new".to_owned(), "w".to_owned())]);
    assert!(roost.stop().success());
}
