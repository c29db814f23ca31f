//! The admin API, the CLI's client commands, and startup errors, against the real binary.

mod common;

use std::process::Command;

use common::{publish_all, Roost, ROOST};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_the_token_and_status_counters_match_what_was_published() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let http = reqwest::Client::new();

    let health = http.get(roost.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let mut req = http.get(roost.url("/api/v1/status"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(body["error"]["message"].as_str().unwrap().contains("admin.token"));
    }
    let resp = http.get(roost.url("/api/v1/nope")).bearer_auth(&roost.token).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "not_found");

    let messages =
        (0..300).map(|i| ("devices/a/env".to_string(), json!({"v": i}).to_string().into_bytes())).collect();
    publish_all(roost.mqtt, "api-test", messages).await;
    publish_all(roost.mqtt, "api-test-2", vec![("devices/a/env".into(), b"oops".to_vec())]).await;
    publish_all(roost.mqtt, "api-test-3", vec![("elsewhere/x".into(), b"{}".to_vec())]).await;

    let s = roost
        .wait_status("everything processed and clients gone", |s| {
            s["sinks"][0]["records_written"] == 300
                && s["pipelines"][0]["messages"] == 301
                && s["connections"] == 0
        })
        .await;
    assert_eq!(s["messages_in"], 302);
    assert_eq!(s["messages_unrouted"], 1);
    assert_eq!(s["pipelines"][0]["name"], "default");
    assert_eq!(s["pipelines"][0]["messages"], 301);
    assert_eq!(s["pipelines"][0]["records"], 300);
    assert_eq!(s["pipelines"][0]["errors"], 1);
    assert_eq!(s["sinks"][0]["name"], "sqlite");
    assert_eq!(s["sinks"][0]["backlog"], 0);
    assert_eq!(s["listeners"]["mqtt"], roost.mqtt.to_string());
    assert_eq!(s["listeners"]["api"], roost.api.to_string());

    let metrics = http.get(roost.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "roost_messages_in_total 302",
        "roost_sink_records_written_total{sink=\"sqlite\",kind=\"sqlite\"} 300",
        "roost_pipeline_mapping_errors_total{pipeline=\"default\"} 1",
        "roost_mqtt_connections 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("roost_sink_batches_total{sink=\"sqlite\",kind=\"sqlite\"} ")));
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_stop_commands_find_the_server_through_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut roost = Roost::start(dir.path(), None);
    let messages =
        (0..42).map(|i| ("devices/cli/env".to_string(), json!({"v": i}).to_string().into_bytes())).collect();
    publish_all(roost.mqtt, "cli-test", messages).await;
    roost.wait_status("written", |s| s["sinks"][0]["records_written"] == 42).await;

    let out = Command::new(ROOST).args(["status", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("mqtt {}  api {}", roost.mqtt, roost.api)), "{text}");
    assert!(text.contains("messages in 42"), "{text}");
    let sink_line = text.lines().find(|l| l.starts_with("sqlite")).unwrap();
    assert_eq!(
        sink_line.split_whitespace().take(3).collect::<Vec<_>>(),
        ["sqlite", "sqlite", "42"],
        "{text}"
    );

    let out = Command::new(ROOST).args(["status", "--json", "--data-dir"]).arg(dir.path()).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["messages_in"], 42);

    let out = Command::new(ROOST).args(["stop", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(roost.wait(std::time::Duration::from_secs(30)).success());
    assert!(!dir.path().join("roost.pid").exists());

    let out = Command::new(ROOST).args(["stop", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    let out = Command::new(ROOST).args(["status", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach roost"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `roost serve` expecting it to fail at startup; returns its stderr.
fn serve_fails(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> String {
    let out = Command::new(ROOST)
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "roost serve {args:?} should have failed:\n{stderr}");
    assert_ne!(out.status.code(), None, "killed by a signal (a panic?):\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_port_in_use_is_a_clear_error_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    let err = serve_fails(&["--mqtt-listen", &port, "--api-listen", "127.0.0.1:0"], &[], dir.path());
    assert!(err.contains("mqtt.listen") && err.contains(&port) && err.contains("in use"), "{err}");
    let err = serve_fails(&["--mqtt-listen", "127.0.0.1:0", "--api-listen", &port], &[], dir.path());
    assert!(err.contains("api.listen") && err.contains(&port) && err.contains("in use"), "{err}");
    // The same through the environment.
    let err = serve_fails(&["--api-listen", "127.0.0.1:0"], &[("ROOST__MQTT__LISTEN", &port)], dir.path());
    assert!(err.contains("mqtt.listen"), "{err}");
}

#[test]
fn unknown_keys_and_bad_values_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roost.toml");
    let cfg = file.to_str().unwrap();

    std::fs::write(&file, "[mqtt]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let err = serve_fails(&["--config", cfg], &[], dir.path());
    assert!(err.contains("lisen") && err.contains(cfg), "{err}");

    std::fs::write(&file, "[mqtt]\nlisten = \"not an address\"\n").unwrap();
    let err = serve_fails(&["--config", cfg], &[], dir.path());
    assert!(err.contains("mqtt.listen") && err.contains(cfg), "{err}");

    let err = serve_fails(&[], &[("ROOST__API__LISTEN", "nowhere")], dir.path());
    assert!(err.contains("api.listen") && err.contains("ROOST__"), "{err}");

    let err = serve_fails(&[], &[("ROOST__MQTT__BOGUS", "1")], dir.path());
    assert!(err.contains("bogus"), "{err}");

    std::fs::write(&file, "[[sinks]]\nname = \"db\"\nkind = \"influx\"\n").unwrap();
    let err = serve_fails(&["--config", cfg], &[], dir.path());
    assert!(err.contains("unknown sink kind \"influx\"; expected one of: sqlite"), "{err}");

    std::fs::write(&file, "[[pipelines]]\nname = \"p\"\ntopics = [\"a/#/b\"]\n").unwrap();
    let err = serve_fails(&["--config", cfg], &[], dir.path());
    assert!(err.contains("pipelines[0].topics"), "{err}");

    std::fs::write(&file, "[[pipelines]]\nname = \"p\"\ntopics = [\"a/#\"]\nsinks = [\"nope\"]\n").unwrap();
    let err = serve_fails(&["--config", cfg], &[], dir.path());
    assert!(err.contains("no sink named \"nope\""), "{err}");

    let err = serve_fails(&["--config", "/nonexistent/roost.toml"], &[], dir.path());
    assert!(err.contains("/nonexistent/roost.toml") && err.contains("no such file"), "{err}");

    // `config check` reports the same, and prints the effective config with secrets masked.
    std::fs::write(&file, "[[sinks]]\nname = \"db\"\nkind = \"sqlite\"\npath = \"x.db\"\n").unwrap();
    let out = Command::new(ROOST).args(["config", "check", "--config", cfg]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("path = \"x.db\"") && text.contains("topics = [\"devices/#\"]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_roost_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let err = serve_fails(&["--mqtt-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"], &[], dir.path());
    assert!(err.contains(&format!("another roost (pid {})", roost.child.id())), "{err}");
    // The first one is unaffected.
    publish_all(roost.mqtt, "still-here", vec![("devices/x/m".into(), br#"{"v":1}"#.to_vec())]).await;
    assert!(roost.stop().success());
}
