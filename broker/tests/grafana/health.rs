//! The health dashboard: what a real Roost (with a processor) said on `/metrics`, scraped twice and stored in
//! VictoriaMetrics (a PromQL server) under an `instance` label of this test's own, and every
//! panel's PromQL run on it as Grafana would, with `$instance` and `$__rate_interval` expanded.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use roost_testkit::{env_url, examples, unique, victoria, Launch};
use serde_json::Value;

/// `text` (Prometheus exposition) with every sample stamped at `ms`.
fn stamped(text: &str, ms: i64) -> String {
    text.lines()
        .map(|l| if l.starts_with('#') || l.is_empty() { format!("{l}\n") } else { format!("{l} {ms}\n") })
        .collect()
}

/// A pipeline through the Celsius example processor (which fails on a payload that is not
/// JSON), so the processor panel has something to show.
const CONFIG: &str = r#"
[[pipelines]]
name = "proc"
topics = ["devices/#"]
sinks = ["sqlite"]
processor = "c2f"
"#;

/// `n` readings and one payload the processor fails on.
fn publish(roost: &roost_testkit::Roost, n: usize) {
    let payloads = (0..n).map(|i| format!("{{\"temperature\": {i}}}")).chain(["not json".to_owned()]);
    for payload in payloads {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", &roost.mqtt.ip().to_string(), "-p", &roost.mqtt.port().to_string(), "-q", "1"])
            .args(["-t", "devices/kitchen/env", "-m", &payload])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_health_panel_answers_from_what_roost_exported() {
    let vm = env_url("ROOST_TEST_VICTORIAMETRICS_URL");
    let dir = tempfile::tempdir().unwrap();
    let roost = Launch::new(env!("CARGO_BIN_EXE_roost")).config(Some(CONFIG)).start(dir.path());
    let instance = unique("roost");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let client = reqwest::Client::new();
    let module = std::fs::read(examples::rust("celsius-to-fahrenheit")).unwrap();
    let resp = client
        .put(roost.url("/api/v1/processors/c2f"))
        .bearer_auth(&roost.token)
        .header("content-type", "application/wasm")
        .body(module)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    // Two scrapes a minute apart (in the samples' time), with messages in between.
    for (round, at) in [(1, now - 120), (2, now - 60)] {
        publish(&roost, 5);
        roost
            .wait_status("records written", |s| s["sinks"][0]["records_written"].as_u64() == Some(5 * round))
            .await;
        let text = client.get(roost.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let resp = client
            .post(format!("{vm}/api/v1/import/prometheus?extra_label=instance={instance}"))
            .body(stamped(&text, at * 1000))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }
    roost.stop();

    let files = super::roost_grafana(dir.path(), None, &["--data-dir", dir.path().to_str().unwrap()]);
    let dashboard: Value = serde_json::from_str(&files["dashboards/roost-health.json"]).unwrap();

    let instance_var = &dashboard["templating"]["list"][0];
    assert_eq!(instance_var["query"]["query"], "label_values(roost_uptime_seconds, instance)");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let labels: Value = client
            .get(format!("{vm}/api/v1/label/instance/values"))
            .query(&[("match[]", "roost_uptime_seconds")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if labels["data"].as_array().unwrap().contains(&Value::from(instance.as_str())) {
            break;
        }
        assert!(Instant::now() < until, "{instance} is not among the instance variable's values: {labels}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // What each panel must show: the label values of its series (empty: no series).
    let expect = |title: &str| -> (&str, BTreeSet<&str>) {
        match title {
            "Messages in" | "Dead letters" => ("", BTreeSet::from([""])),
            "MQTT connections" => ("instance", BTreeSet::from([instance.as_str()])),
            t if t.ends_with("per pipeline") => ("pipeline", BTreeSet::from(["proc"])),
            t if t.ends_with("per sink") => ("sink", BTreeSet::from(["sqlite"])),
            "Processor errors" => ("processor", BTreeSet::from(["c2f"])),
            "Boards by state" => {
                ("state", BTreeSet::from(["idle", "busy", "offline", "unsupported", "bad_status", "pending"]))
            }
            other => panic!("a panel this test does not know: {other}"),
        }
    };
    let panels = dashboard["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 11);
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let expr = panel["targets"][0]["expr"].as_str().unwrap();
        let promql = expr.replace("$instance", &instance).replace("$__rate_interval", "5m");
        let (label, want) = expect(title);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = victoria::query(&vm, &promql, now - 30).await;
            assert_eq!(answer["status"], "success", "{title}: {promql}: {answer}");
            let result = answer["data"]["result"].as_array().unwrap();
            let got: BTreeSet<&str> =
                result.iter().map(|s| s["metric"][label].as_str().unwrap_or("")).collect();
            if got == want {
                if title == "Messages in" || title == "Processor errors" {
                    // 6 messages, one failing the processor, between two samples a minute apart.
                    let rate: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
                    assert!(rate > 0.0, "{title}: {answer}");
                }
                break;
            }
            assert!(Instant::now() < until, "{title}: {promql}: want {label} {want:?}, got {answer}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
