//! Refused publishes and the per-device message rate, against the real binary and real clients:
//! MQTT 5 clients are told why in the PUBACK and stay connected, MQTT 3.1.1 clients are dropped
//! or disconnected as `mqtt.refused_publish` says, a device over `mqtt.device_rate` loses only its
//! own excess, and every refusal is counted by device on `/metrics`.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{add_device, rows_after_stop, Roost};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// One QoS 1 publish with mosquitto_pub as `device`: (exit success, stderr).
fn mosquitto_pub(addr: SocketAddr, version: &str, device: &str, secret: &str, topic: &str) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-V", version, "-q", "1"])
        .args(["-i", device, "-u", device, "-P", secret, "-t", topic, "-m", r#"{"v":1}"#])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn metric(roost: &Roost, device: &str) -> u64 {
    let text = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    let prefix = format!("roost_device_refusals_total{{device=\"{device}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishes_are_explained_to_mqtt5_and_dropped_or_disconnected_for_311() {
    for policy in ["drop", "disconnect"] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("[mqtt]\nrefused_publish = \"{policy}\"\n");
        let roost = Roost::start(dir.path(), Some(&config));
        let secret = add_device(&roost, "d-1");
        // MQTT 5: the PUBACK says why (mosquitto_pub warns and exits normally).
        let (ok, err) = mosquitto_pub(roost.mqtt, "mqttv5", "d-1", &secret, "devices/d-2/env");
        assert!(ok && err.contains("Not authorized"), "{policy}: {err}");
        // MQTT 3.1.1: dropped with a PUBACK, or the connection closed.
        let (ok, err) = mosquitto_pub(roost.mqtt, "mqttv311", "d-1", &secret, "devices/d-2/env");
        assert_eq!(ok, policy == "drop", "{policy}: {err}");
        // Its own topic is fine either way.
        assert!(mosquitto_pub(roost.mqtt, "mqttv311", "d-1", &secret, "devices/d-1/env").0);
        assert_eq!(metric(&roost, "d-1").await, 2, "{policy}");
        assert_eq!(rows_after_stop(roost, &["d-1", "d-2"]), [1, 0], "{policy}");
    }
}

/// Publishes `n` QoS 1 messages as `device` as fast as the broker acknowledges (100 in flight);
/// how long until the last PUBACK.
async fn flood(addr: SocketAddr, device: &str, secret: &str, n: usize) -> Duration {
    let mut opts = MqttOptions::new(device, addr.ip().to_string(), addr.port());
    opts.set_credentials(device, secret);
    opts.set_inflight(100);
    let (client, mut events) = AsyncClient::new(opts, 100);
    let topic = format!("devices/{device}/env");
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, format!("{{\"seq\":{i}}}"))
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
            acked += 1;
        }
    }
    let elapsed = started.elapsed();
    drop(sender.await.unwrap());
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_message_rate_loses_only_its_own_excess() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some("[mqtt]\ndevice_rate = 20\n"));
    let (fast, slow) = (add_device(&roost, "fast"), add_device(&roost, "slow"));
    let (addr, slow_addr) = (roost.mqtt, roost.mqtt);
    let flooding = tokio::spawn(async move { flood(addr, "fast", &fast, 1000).await });
    // Another device, under its rate, meanwhile.
    let mut slow_sent = 0;
    for _ in 0..5 {
        flood(slow_addr, "slow", &slow, 2).await;
        slow_sent += 2;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = flooding.await.unwrap();
    let refused = metric(&roost, "fast").await;
    assert_eq!(metric(&roost, "slow").await, 0);
    let rows = rows_after_stop(roost, &["fast", "slow"]);
    assert_eq!(rows[1], slow_sent, "the other device lost nothing");
    // The flood got its first second's worth at once, then 20 a second at most.
    let most = 20 + (elapsed.as_secs_f64() * 20.0).ceil() as i64;
    assert!(rows[0] >= 20 && rows[0] <= most, "{} stored in {elapsed:?}, at most {most}", rows[0]);
    assert_eq!(rows[0] as u64 + refused, 1000, "every message is stored or counted as refused");
}

/// Subscribes `client` to `filter` and returns whether the SUBACK granted it.
async fn subscribe(client: &AsyncClient, events: &mut rumqttc::EventLoop, filter: &str) -> bool {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await.unwrap() {
            return ack.return_codes.iter().all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_rules_with_the_device_placeholder_govern_publishes_subscriptions_and_wills() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[acl]\npublish = [\"devices/{device}/#\", \"sites/+/{device}/#\"]\n\
                  subscribe = [\"devices/{device}/#\", \"roost/boards/{device}/cmd\", \"firmware/#\"]\n";
    let roost = Roost::start(dir.path(), Some(config));
    let secret = add_device(&roost, "d-1");
    let addr = roost.mqtt;

    // Publishes: its own devices/ topics and its sites/ topics, nobody else's.
    let mut refused = 0;
    for (topic, ok) in [("sites/lab/d-1/env", true), ("sites/lab/d-2/env", false), ("firmware/x", false)] {
        mosquitto_pub(addr, "mqttv311", "d-1", &secret, topic);
        refused += u64::from(!ok);
        assert_eq!(metric(&roost, "d-1").await, refused, "{topic}");
    }

    // Subscriptions: only filters whose every topic a rule matches.
    let mut opts = MqttOptions::new("d-1", addr.ip().to_string(), addr.port());
    opts.set_credentials("d-1", &secret);
    let (client, mut events) = AsyncClient::new(opts, 10);
    for (filter, ok) in [
        ("devices/d-1/config", true),
        ("firmware/+/image", true),
        ("roost/boards/d-1/cmd", true),
        ("devices/+/config", false),
        ("devices/#", false),
        ("sites/lab/d-1/env", false),
    ] {
        assert_eq!(subscribe(&client, &mut events, filter).await, ok, "{filter}");
    }
    drop((client, events));

    // Wills: one the device could not publish never reaches a watcher; its own does.
    let watcher_opts = MqttOptions::new("watcher", addr.ip().to_string(), addr.port());
    let (watcher, mut watching) = AsyncClient::new(watcher_opts, 10);
    assert!(
        subscribe(&watcher, &mut watching, "devices/#").await,
        "anonymous clients are not bound by [acl]"
    );
    for (will_topic, delivered) in [("devices/d-2/status", false), ("devices/d-1/status", true)] {
        let mut opts = MqttOptions::new("d-1", addr.ip().to_string(), addr.port());
        opts.set_credentials("d-1", &secret);
        opts.set_last_will(rumqttc::LastWill::new(will_topic, "gone", QoS::AtLeastOnce, false));
        let (device, mut device_events) = AsyncClient::new(opts, 10);
        while !matches!(device_events.poll().await.unwrap(), Event::Incoming(Packet::ConnAck(_))) {}
        drop((device, device_events)); // an abrupt drop: the broker publishes the will
        let got = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Event::Incoming(Packet::Publish(p)) = watching.poll().await.unwrap() {
                    return p.topic;
                }
            }
        })
        .await;
        match (delivered, got) {
            (true, Ok(topic)) => assert_eq!(topic, will_topic),
            (false, Err(_)) => {}
            (want, got) => panic!("will on {will_topic}: delivered should be {want}, got {got:?}"),
        }
    }
    assert_eq!(metric(&roost, "d-1").await, 6, "two publishes, three subscriptions and one will refused");
}

/// Connects as `device` under `client_id`; whether it was let in, and the event loop.
async fn connect(
    addr: SocketAddr,
    device: &str,
    secret: &str,
    client_id: &str,
) -> (bool, rumqttc::EventLoop) {
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_credentials(device, secret);
    let (_client, mut events) = AsyncClient::new(opts, 10);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return (true, events),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(_)) => return (false, events),
            Err(e) => panic!("{client_id}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_under_at_most_its_limit_of_client_ids_and_can_always_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nclient_id_rule = \"prefix\"\nmax_connections_per_device = 2\n";
    let roost = Roost::start(dir.path(), Some(config));
    let secret = add_device(&roost, "d");
    let addr = roost.mqtt;
    let (ok, _a) = connect(addr, "d", &secret, "d:a").await;
    assert!(ok);
    let (ok, b) = connect(addr, "d", &secret, "d:b").await;
    assert!(ok);
    assert!(!connect(addr, "d", &secret, "d:c").await.0, "a third client id is refused");
    // Coming back under an id it uses takes that session over, even at the limit.
    let (ok, _a_again) = connect(addr, "d", &secret, "d:a").await;
    assert!(ok, "a reconnect is never refused");
    drop(b);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if connect(addr, "d", &secret, "d:c").await.0 {
            break;
        }
        assert!(Instant::now() < until, "d:b's place was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&roost, "d").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_the_size_limit_closes_the_connection_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some("[mqtt]\nmax_packet_size = 65536\n"));
    let file = dir.path().join("big.json");
    std::fs::write(&file, format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000))).unwrap();
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &roost.mqtt.port().to_string(), "-V", "mqttv311", "-q", "1"])
        .args(["-i", "big", "-t", "devices/big/env", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the broker closes the connection");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
        if text.contains("roost_auth_events_total{event=\"packets_too_large\"} 1\n") {
            break;
        }
        assert!(Instant::now() < until, "not counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, log) = roost.stop_with_log();
    assert!(status.success());
    assert!(log.contains("packet over mqtt.max_packet_size"), "{log}");
}
