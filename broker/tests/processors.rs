//! WebAssembly processors through the real binary: uploaded over HTTP while `roost` runs, fed
//! over MQTT, checked in the SQLite sink; hot swap, rollback, the Python example, and every kind
//! of bad module, at upload (HTTP 4xx) and at run time (dead letters, metrics).

mod common;

use common::{publish_all, Roost};
use roost_testkit::examples;
use serde_json::{json, Value};

/// A pipeline `proc` on devices/# with `pipeline_processor`, and `[processors]` settings from
/// `extra` (the defaults otherwise: the CPU budget counts the worker thread's own CPU time, so
/// a loaded test machine does not fail calls that merely waited).
fn config(pipeline_processor: &str, extra: &str) -> String {
    format!(
        r#"
[processors]
{extra}

[[pipelines]]
name = "proc"
topics = ["devices/#"]
sinks = ["sqlite"]
processor = {pipeline_processor}

[[pipelines]]
name = "spare"
topics = ["spare/#"]
sinks = ["sqlite"]
"#
    )
}

async fn put(roost: &Roost, name: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .put(roost.url(&format!("/api/v1/processors/{name}")))
        .bearer_auth(&roost.token)
        .header("content-type", "application/wasm")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn api(roost: &Roost, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, roost.url(path)).bearer_auth(&roost.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn rust_example(name: &str) -> Vec<u8> {
    examples::read(&examples::rust(name))
}

fn readings(from: usize, to: usize) -> Vec<(String, Vec<u8>)> {
    (from..to)
        .map(|i| {
            (
                format!("devices/d{}/env", i % 4),
                format!(r#"{{"temperature": 20.5, "seq": {i}}}"#).into_bytes(),
            )
        })
        .collect()
}

async fn written(roost: &Roost, n: u64) {
    roost.wait_status(&format!("{n} records written"), |s| s["sinks"][0]["records_written"] == n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celsius_example_uploaded_over_http_converts_what_devices_publish() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(&config("\"c2f\"", "")));
    let (status, doc) = put(&roost, "c2f", rust_example("celsius-to-fahrenheit")).await;
    assert_eq!(status, 201, "{doc:#}");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["sha256"].as_str().unwrap().len(), 64);

    publish_all(roost.mqtt, "c2f-pub", readings(0, 2000)).await;
    written(&roost, 2000).await;
    let db = roost.db();
    let (rows, seqs, min_f, max_f): (i64, i64, f64, f64) = db
        .query_row(
            "SELECT count(*), count(DISTINCT seq), min(temperature_f), max(temperature_f) FROM env",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((rows, seqs), (2000, 2000));
    assert!((min_f - 68.9).abs() < 1e-9 && (max_f - 68.9).abs() < 1e-9, "{min_f} {max_f}");
    let devices: i64 = db.query_row("SELECT count(DISTINCT device) FROM env", [], |r| r.get(0)).unwrap();
    assert_eq!(devices, 4);

    // The status names each pipeline's processor.
    let (ok, out, err) = roost.cli(&["status"]);
    assert!(ok, "{err}");
    let line = |name: &str| out.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(line("proc ").contains(" c2f ") && line("spare ").contains("json mapping"), "{out}");

    // The CLI sees it, with its call statistics.
    let (ok, out, err) = roost.cli(&["processor", "list"]);
    assert!(ok && out.contains("c2f") && out.contains("proc"), "{out}{err}");
    let (ok, out, err) = roost.cli(&["processor", "show", "c2f", "--json"]);
    assert!(ok, "{err}");
    let show: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(show["versions"][0]["calls"], 2000, "{show:#}");
    assert_eq!(show["versions"][0]["errors"], 0);
    assert!(show["versions"][0]["mean_us"].as_f64().unwrap() > 0.0);
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"roost_processor_calls_total{processor="c2f",version="1"} 2000"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"roost_processor_failing{processor="c2f",version="1"} 0"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_processes_every_message_exactly_once_and_rollback_restores_v1() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(&config("\"conv\"", "")));
    let (status, doc) = put(&roost, "conv", rust_example("celsius-to-fahrenheit")).await;
    assert_eq!(status, 201, "{doc:#}");

    // A steady stream; v2 is uploaded while it flows.
    const N: usize = 20_000;
    publish_all(roost.mqtt, "swap-a", readings(0, 2000)).await;
    let stream = tokio::spawn(publish_all(roost.mqtt, "swap-b", readings(2000, N)));
    let (status, doc) = put(&roost, "conv", rust_example("passthrough")).await;
    assert_eq!((status, doc["version"].clone()), (201, json!(2)), "{doc:#}");
    stream.await.unwrap();
    written(&roost, N as u64).await;

    let db = roost.db();
    let (rows, seqs, by_v1, by_v2, both): (i64, i64, i64, i64, i64) = db
        .query_row(
            "SELECT count(*), count(DISTINCT seq), count(temperature_f), count(temperature),
                    count(*) FILTER (WHERE temperature_f IS NOT NULL AND temperature IS NOT NULL) FROM env",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((rows, seqs), (N as i64, N as i64), "every message exactly once");
    assert_eq!(both, 0);
    assert_eq!(by_v1 + by_v2, N as i64);
    assert!(by_v1 >= 2000 && by_v2 > 0, "v1 {by_v1}, v2 {by_v2}");
    // Once v2 took over, no message went back to v1.
    let last_v1: i64 =
        db.query_row("SELECT max(seq) FROM env WHERE temperature_f IS NOT NULL", [], |r| r.get(0)).unwrap();
    let first_v2: i64 =
        db.query_row("SELECT min(seq) FROM env WHERE temperature IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert!(first_v2 > 1999, "v2 ran before its upload: {first_v2}");
    let late_v1: i64 = db
        .query_row(
            "SELECT count(*) FROM env WHERE temperature_f IS NOT NULL AND seq > ?1",
            [last_v1.max(first_v2) + 4096],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(late_v1, 0);

    // Rollback (CLI) makes v1 active again.
    let (ok, out, err) = roost.cli(&["processor", "rollback", "conv"]);
    assert!(ok && out.contains("version 1 is active"), "{out}{err}");
    publish_all(roost.mqtt, "swap-c", readings(N, N + 100)).await;
    written(&roost, N as u64 + 100).await;
    let after: i64 = db
        .query_row("SELECT count(temperature_f) FROM env WHERE seq >= ?1", [N as i64], |r| r.get(0))
        .unwrap();
    assert_eq!(after, 100);
    let (_, show) = api(&roost, reqwest::Method::GET, "/api/v1/processors/conv", None).await;
    assert_eq!(show["active"], 1, "{show:#}");
    assert_eq!(show["versions"].as_array().unwrap().len(), 2);

    // Versions survive a restart, with the active one.
    let dir_path = roost.dir.clone();
    assert!(roost.stop().success());
    let roost = Roost::start(&dir_path, Some(&config("\"conv\"", "")));
    let (_, show) = api(&roost, reqwest::Method::GET, "/api/v1/processors/conv", None).await;
    assert_eq!(
        (show["active"].clone(), show["versions"].as_array().unwrap().len()),
        (json!(1), 2),
        "{show:#}"
    );
    publish_all(roost.mqtt, "swap-d", readings(N + 100, N + 110)).await;
    written(&roost, 10).await;
    let after: i64 = roost
        .db()
        .query_row("SELECT count(temperature_f) FROM env WHERE seq >= ?1", [N as i64 + 100], |r| r.get(0))
        .unwrap();
    assert_eq!(after, 10);
    assert!(!roost.log_text().contains("recompiling"), "the compiled module was reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_example_processes_older_platform_messages_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    // A Python component is ~18 MB: over the 16 MiB default upload limit.
    let roost = Roost::start(dir.path(), Some(&config("\"myt\"", "max_upload_mib = 64")));
    let module = examples::read(&examples::python("myt_compat"));
    let samples = json!([{"topic": "devices/gw/up", "payload": {"measurement": "climate", "sensor": "s-1", "data": {"temp": 215}}}]);
    let (status, doc) = api(&roost, reqwest::Method::POST, "/api/v1/processors/myt/test", None).await;
    assert_eq!(status, 400, "a JSON test of a processor that is not uploaded needs a body: {doc:#}");
    // Test the file before uploading it (CLI, multipart), then upload it with the CLI.
    let samples_file = dir.path().join("samples.json");
    std::fs::write(&samples_file, samples.to_string()).unwrap();
    let wasm_file = examples::python("myt_compat");
    let (ok, out, err) = roost.cli(&[
        "processor",
        "test",
        "myt",
        "--samples",
        samples_file.to_str().unwrap(),
        "--file",
        wasm_file.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("devices/gw/up: 1 record(s)") && out.contains("\"temp\":21.5"), "{out}{err}");
    let (ok, out, err) = roost.cli(&[
        "processor",
        "upload",
        "myt",
        wasm_file.to_str().unwrap(),
        "--samples",
        samples_file.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("uploaded myt version 1"), "{out}{err}");
    assert_eq!(module.len() as u64, {
        let (_, show) = api(&roost, reqwest::Method::GET, "/api/v1/processors/myt", None).await;
        show["versions"][0]["size"].as_u64().unwrap()
    });

    let messages = (0..500)
        .map(|i| {
            let payload = json!({"measurement": "climate", "sensor": format!("greenhouse-{}", i % 5), "data": {"temp": 200 + i, "hum": 40.5, "debug": "x"}});
            ("devices/gw/up".to_string(), payload.to_string().into_bytes())
        })
        .collect();
    publish_all(roost.mqtt, "myt-pub", messages).await;
    written(&roost, 500).await;
    let db = roost.db();
    let (rows, sensors, min_t, max_t): (i64, i64, f64, f64) = db
        .query_row("SELECT count(*), count(DISTINCT device), min(temp), max(temp) FROM climate", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!((rows, sensors), (500, 5));
    assert_eq!((min_t, max_t), (20.0, 69.9));
    let has_debug = db.prepare("SELECT debug FROM climate").is_ok();
    assert!(!has_debug, "the script drops `debug`");
    // Its print() in init reached Roost's log: from the two checks (test, upload) and the
    // pipeline's workers.
    let log = roost.log_text();
    assert!(log.matches("myt-compat ready (config '')").count() >= 3, "{log}");
}

fn dead_letters(roost: &Roost) -> Vec<Value> {
    let (ok, out, err) = roost.cli(&["deadletter", "list", "--json", "--limit", "1000"]);
    assert!(ok, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    doc["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_processors_get_precise_http_errors() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "max_upload_mib = 1";
    let roost =
        Roost::start(dir.path(), Some(&config("{ name = \"hostile\", config = \"init-trap\" }", extra)));
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("not-wasm", b"#!/bin/sh\necho hi\n".to_vec(), 400, "invalid_module", "not a WebAssembly file"),
        (
            "core",
            wat::parse_str("(module)").unwrap(),
            400,
            "invalid_module",
            "a core WebAssembly module, not a component",
        ),
        (
            "garbage",
            b"\0asm\x0d\0\x01\0\x01\x02".to_vec(),
            400,
            "invalid_module",
            "not a valid WebAssembly component",
        ),
        (
            "empty-world",
            wat::parse_str("(component)").unwrap(),
            400,
            "invalid_module",
            "does not implement the world roost:processor/processor@0.1",
        ),
        (
            "v2",
            wat::parse_str(r#"(component (import "roost:processor/log@0.2.0" (instance)))"#).unwrap(),
            400,
            "invalid_module",
            "built against roost:processor@0.2.0",
        ),
        (
            "files",
            wat::parse_str(r#"(component (import "wasi:filesystem/preopens@0.2.0" (instance)))"#).unwrap(),
            400,
            "invalid_module",
            "imports `wasi:filesystem/preopens@0.2.0`: processors get no file system",
        ),
        ("huge", vec![0u8; 2 << 20], 413, "too_large", "larger than processors.max_upload_mib (1 MiB)"),
        ("hostile", rust_example("hostile"), 422, "init_failed", "init was told to trap"),
        ("bad name!", rust_example("passthrough"), 400, "bad_request", "invalid processor name"),
    ];
    for (name, body, status, code, says) in cases {
        let (got, doc) = put(&roost, &name.replace(' ', "%20"), body).await;
        assert_eq!(got, status, "{name}: {doc:#}");
        assert_eq!(doc["error"]["code"], code, "{name}: {doc:#}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(says), "{name}: {doc:#}");
    }
    // A sample the module refuses refuses the upload, with each sample's result.
    let resp = reqwest::Client::new()
        .put(roost.url("/api/v1/processors/c2f"))
        .bearer_auth(&roost.token)
        .header("content-type", "multipart/form-data; boundary=XX")
        .body(multipart_body(&rust_example("celsius-to-fahrenheit"), r#"[{"topic": "devices/d1/env", "payload": "not json"}, {"topic": "devices/d1/env", "payload": {"temperature": 0}}]"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["error"]["code"], "samples_failed");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 of 2 sample messages failed: devices/d1/env: payload is not JSON"),
        "{doc:#}"
    );
    assert_eq!(doc["error"]["results"][1]["records"][0]["fields"]["temperature_f"], 32.0);
    // Nothing was stored, and Roost still serves.
    let (_, list) = api(&roost, reqwest::Method::GET, "/api/v1/processors", None).await;
    assert_eq!(list["processors"], json!([]), "{list:#}");
    let (status, _) = api(&roost, reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(status, 200);
}

fn multipart_body(module: &[u8], samples: &str) -> Vec<u8> {
    let mut body =
        b"--XX\r\nContent-Disposition: form-data; name=\"module\"; filename=\"m.wasm\"\r\n\r\n".to_vec();
    body.extend_from_slice(module);
    body.extend_from_slice(b"\r\n--XX\r\nContent-Disposition: form-data; name=\"samples\"\r\nContent-Type: application/json\r\n\r\n");
    body.extend_from_slice(samples.as_bytes());
    body.extend_from_slice(b"\r\n--XX--\r\n");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_time_failures_become_dead_letters_and_roost_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A CPU budget far enough that the memory cap, not the clock, stops `bomb` and `big` on a
    // slow machine (a debug build fills 64 MiB slowly).
    let extra = "cpu_budget_ms = 3000";
    let roost = Roost::start(dir.path(), Some(&config("\"hostile\"", extra)));
    let (status, doc) = put(&roost, "hostile", rust_example("hostile")).await;
    assert_eq!(status, 201, "{doc:#}");
    let bad = ["loop", "bomb", "panic", "big", "many", "exit", "refuse"];
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for b in bad {
        messages.push(("devices/d1/x".into(), b.as_bytes().to_vec()));
        messages.push(("devices/d1/x".into(), b"fine".to_vec()));
    }
    publish_all(roost.mqtt, "hostile-pub", messages).await;
    written(&roost, bad.len() as u64).await;
    roost.wait_status("dead letters", |s| s["dead_letters"]["stored"] == bad.len() as u64).await;
    let letters = dead_letters(&roost);
    let reasons: Vec<(&str, &str)> =
        letters.iter().map(|e| (e["payload"].as_str().unwrap(), e["reason"].as_str().unwrap())).collect();
    let expect = [
        ("loop", "ran past its CPU budget of 3s"),
        ("bomb", "tried to grow memory past the cap of 64 MiB"),
        ("panic", "told to panic"),
        ("big", "memory past the cap"),
        ("many", "output over the cap: 12000 records for one message (the cap is 10000)"),
        ("exit", "called exit (failure)"),
        ("refuse", "refused on request"),
    ];
    for ((payload, reason), (want_payload, says)) in reasons.iter().zip(expect) {
        assert_eq!(*payload, want_payload);
        assert!(reason.starts_with("processor hostile v1: ") && reason.contains(says), "{payload}: {reason}");
    }
    assert_eq!(letters[0]["source"], "pipeline:proc");
    // Every "fine" neighbour was stored.
    assert_eq!(common::count(&roost.db(), "hostile"), bad.len() as i64);

    // A module failing every message is shown as failing, in the API and on /metrics.
    let refusals = (0..25).map(|_| ("devices/d1/x".to_string(), b"refuse".to_vec())).collect();
    publish_all(roost.mqtt, "hostile-pub-2", refusals).await;
    roost.wait_status("refusals stored", |s| s["dead_letters"]["stored"] == bad.len() as u64 + 25).await;
    let (_, show) = api(&roost, reqwest::Method::GET, "/api/v1/processors/hostile", None).await;
    assert_eq!(show["versions"][0]["failing"], true, "{show:#}");
    let metrics = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"roost_processor_failing{processor="hostile",version="1"} 1"#), "{metrics}");

    // Deleting it is refused while a pipeline names it; an unused one can go.
    let (status, doc) = api(&roost, reqwest::Method::DELETE, "/api/v1/processors/hostile", None).await;
    assert_eq!((status, doc["error"]["code"].clone()), (409, json!("in_use")), "{doc:#}");
    let (status, _) = put(&roost, "spare-one", rust_example("passthrough")).await;
    assert_eq!(status, 201);
    let (ok, out, err) = roost.cli(&["processor", "delete", "spare-one"]);
    assert!(ok && out.contains("deleted spare-one"), "{out}{err}");
    let (status, _) = api(&roost, reqwest::Method::GET, "/api/v1/processors/spare-one", None).await;
    assert_eq!(status, 404);
}
