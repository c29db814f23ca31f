//! What the benchmarks share: the real `roost` (release build) started by the test kit on free
//! ports with a temporary data directory, its warnings on the terminal; QoS 1 publishers of
//! 100-byte JSON payloads; waiting for the status to show a count.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use roost_testkit::{Launch, Roost};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// Starts `roost serve` on free ports in `dir`, with `config` as its config file if given.
pub fn start(dir: &Path, config: Option<&str>) -> Roost {
    Launch::new(env!("CARGO_BIN_EXE_roost")).config(config).log_to_stderr().start(dir)
}

pub async fn status(server: &Roost, http: &reqwest::Client) -> Value {
    let url = format!("http://{}/api/v1/status", server.api);
    http.get(url).bearer_auth(&server.token).send().await.unwrap().json().await.unwrap()
}

/// A JSON payload of exactly 100 bytes.
pub fn payload(client: usize, seq: u64) -> Vec<u8> {
    let mut p = format!(
        r#"{{"seq":{seq},"client":{client},"temp":21.53,"hum":40.2,"pressure":1013.25,"ok":true,"label":""#
    );
    while p.len() < 98 {
        p.push('x');
    }
    p.push_str("\"}");
    assert_eq!(p.len(), 100);
    p.into_bytes()
}

/// Publishes `per_client` messages to `devices/<client id>/env` from each of `clients` clients,
/// client `c` connecting with `options(c)` (100 in flight); returns when all are acked.
pub async fn publish(
    clients: usize,
    per_client: u64,
    options: impl Fn(usize) -> MqttOptions + Clone + Send + 'static,
) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut opts = options(c);
        tasks.push(tokio::spawn(async move {
            opts.set_inflight(100);
            opts.set_keep_alive(Duration::from_secs(60));
            let topic = format!("devices/{}/env", opts.client_id());
            let (client, mut eventloop) = AsyncClient::new(opts, 1000);
            let sender = tokio::spawn(async move {
                for seq in 0..per_client {
                    client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload(c, seq)).await.unwrap();
                }
                client
            });
            let mut acked = 0;
            while acked < per_client {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("client {c}: {e}"),
                }
            }
            let client = sender.await.unwrap();
            let _ = client.disconnect().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// Polls the status until the number at `pointer` (a JSON pointer) reaches `want`; gives up,
/// showing the status, after two minutes without progress.
pub async fn wait_for(server: &Roost, http: &reqwest::Client, pointer: &str, want: u64) {
    let (mut last, mut since) = (None, Instant::now());
    loop {
        let doc = status(server, http).await;
        let now = doc.pointer(pointer).and_then(Value::as_u64);
        if now == Some(want) {
            return;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "stuck at {now:?} of {want} at {pointer}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
