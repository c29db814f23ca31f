//! Boards benchmark: `exec` of a trivial command on 200 simulated boards, and upload throughput
//! to one board, through the real `roost` binary and its admin API.
//!
//! The boards are `roost-board` agents run as tasks in this process (the real agent code,
//! `roost_board::run`, each with its own MQTT connection and root directory). Prints:
//! - exec: wall time from the API request until the last of the 200 results (target < 2 s),
//!   best and median of 5 runs;
//! - upload: MB/s for a 32 MiB file to one board (chunked to the broker's max payload, every
//!   chunk hashed and flushed to disk by the board, the whole file verified).
//!
//! `ROOST_BENCH_BOARDS` sets the board count (default 200).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::start;
use roost_testkit::Roost;

/// POSTs to a board endpoint and reads the NDJSON answer; returns the results.
async fn post(server: &Roost, path: &str, body: reqwest::Body, json_body: bool) -> Vec<Value> {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/api/v1{path}", server.api))
        .bearer_auth(&server.token)
        .body(body);
    if json_body {
        req = req.header("content-type", "application/json");
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "result")
        .collect()
}

async fn wait_idle(server: &Roost, n: usize) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let list: Value = reqwest::Client::new()
            .get(format!("http://{}/api/v1/boards", server.api))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let idle = list["boards"].as_array().unwrap().iter().filter(|b| b["state"] == "idle").count();
        if idle >= n {
            return;
        }
        assert!(Instant::now() < until, "only {idle}/{n} boards idle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    let boards: usize = std::env::var("ROOST_BENCH_BOARDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let roots = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut agents = Vec::new();
        for i in 0..boards {
            let name = format!("sim-{i:03}");
            let mut cfg = roost_board::AgentConfig::new(
                &name,
                &server.mqtt.ip().to_string(),
                server.mqtt.port(),
                roots.path().join(&name),
            );
            cfg.keep_alive = Duration::from_secs(30);
            agents.push(tokio::spawn(roost_board::run(cfg, std::future::pending())));
        }
        wait_idle(&server, boards).await;
        let names = format!("sim-[000-{:03}]", boards - 1);

        let mut times = Vec::new();
        for _ in 0..5 {
            let body = json!({"boards": names, "code": "echo hi", "timeout_ms": 10_000}).to_string();
            let started = Instant::now();
            let results = post(&server, "/boards/exec", body.into(), true).await;
            let took = started.elapsed();
            assert_eq!(results.len(), boards);
            let ok = results.iter().filter(|r| r["ok"] == true).count();
            assert_eq!(ok, boards, "{:?}", results.iter().find(|r| r["ok"] != true));
            times.push(took);
        }
        times.sort();
        println!(
            "boards/exec: `echo hi` on {boards} boards: best {:.3} s, median {:.3} s (target < 2 s)",
            times[0].as_secs_f64(),
            times[times.len() / 2].as_secs_f64()
        );

        let size = 32usize << 20;
        let data: Vec<u8> =
            (0..size).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect();
        let path = "/boards/upload?boards=sim-000&dest=bench.bin";
        let started = Instant::now();
        let results = post(&server, path, data.clone().into(), false).await;
        let took = started.elapsed();
        assert_eq!(results[0]["ok"], true, "{:?}", results);
        assert!(std::fs::read(roots.path().join("sim-000/bench.bin")).unwrap() == data);
        println!(
            "boards/upload: {} MiB to one board in {:.2} s: {:.1} MB/s",
            size >> 20,
            took.as_secs_f64(),
            size as f64 / took.as_secs_f64() / 1e6
        );
        for a in agents {
            a.abort();
        }
    });
}
