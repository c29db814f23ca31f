//! Device credentials against the real binary and real clients: `roost device add` makes a
//! secret, the broker checks it at CONNECT, a device publishes only under its own name, a
//! revoked device is disconnected, and a listener beyond loopback refuses anonymous clients.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{add_device, count, mosquitto_pub, Roost};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};

/// `mosquitto_pub` at QoS 1 as `device`; panics unless it succeeds.
fn publish_as(addr: SocketAddr, device: &str, secret: &str, topic: &str, payload: &str) {
    mosquitto_pub(
        addr,
        &["-i", device, "-u", device, "-P", secret, "-q", "1", "-t", topic, "-m", payload],
        "",
    );
}

/// `mosquitto_pub` that may fail: its output.
fn try_pub(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-q", "1"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Connects and returns the CONNACK code, and the event loop to keep the session going.
async fn connect(
    addr: SocketAddr,
    client_id: &str,
    creds: Option<(&str, &str)>,
) -> (ConnectReturnCode, rumqttc::EventLoop) {
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    let (_client, mut events) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("no CONNACK") {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => return (ack.code, events),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return (code, events),
            Err(e) => panic!("connecting {client_id}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_connect_with_their_credentials_only_and_publish_only_as_themselves() {
    let dir = tempfile::tempdir().unwrap();
    // Beyond loopback: credentials are required.
    let roost = Roost::start_with(dir.path(), None, "0.0.0.0:0");
    let addr: SocketAddr = format!("127.0.0.1:{}", roost.mqtt.port()).parse().unwrap();
    let s1 = add_device(&roost, "sensor-1");
    let s2 = add_device(&roost, "sensor-2");
    let (ok, _, err) = roost.cli(&["device", "add", "sensor-1"]);
    assert!(!ok && err.contains("exists"), "{err}");

    // Anonymous, unknown, wrong secret, someone else's client id: refused.
    assert_eq!(connect(addr, "probe", None).await.0, ConnectReturnCode::NotAuthorized);
    assert_eq!(connect(addr, "x", Some(("x", "y"))).await.0, ConnectReturnCode::NotAuthorized);
    assert_eq!(
        connect(addr, "sensor-1", Some(("sensor-1", &s2))).await.0,
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(connect(addr, "sensor-2", Some(("sensor-1", &s1))).await.0, ConnectReturnCode::NotAuthorized);
    let out = try_pub(
        addr,
        &["-i", "sensor-1", "-u", "sensor-1", "-P", "wrong", "-t", "devices/sensor-1/env", "-m", "{\"t\":9}"],
    );
    assert!(!out.status.success(), "a wrong password must be refused");

    // Its own credentials: stored. As another device: refused, nothing stored.
    publish_as(addr, "sensor-1", &s1, "devices/sensor-1/env", "{\"t\":1}");
    publish_as(addr, "sensor-1", &s1, "devices/sensor-2/env", "{\"t\":2}");
    publish_as(addr, "sensor-2", &s2, "devices/sensor-2/env", "{\"t\":3}");
    roost.wait_status("two rows", |s| s["sinks"][0]["records_written"] == 2).await;
    let db = roost.db();
    let rows: Vec<(String, i64)> = db
        .prepare("SELECT device, t FROM env ORDER BY t")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, [("sensor-1".to_string(), 1), ("sensor-2".to_string(), 3)]);
    let metrics = reqwest::get(format!("http://{}/metrics", roost.api)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roost_auth_events_total{event=\"publishes_denied\"} 1\n"), "{metrics}");
    assert!(metrics.contains("roost_auth_events_total{event=\"bad_credentials\"} 2\n"), "{metrics}");

    // Revoked while connected: disconnected, and refused from then on.
    let (code, mut session) = connect(addr, "sensor-2", Some(("sensor-2", &s2))).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let revoked = Instant::now();
    let (ok, _, err) = roost.cli(&["device", "revoke", "sensor-2"]);
    assert!(ok, "{err}");
    let dropped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if session.poll().await.is_err() {
                return revoked.elapsed();
            }
        }
    })
    .await
    .expect("a revoked device stays connected");
    println!(
        "revoked device disconnected {} ms after `roost device revoke` was started",
        dropped.as_millis()
    );
    assert_eq!(connect(addr, "sensor-2", Some(("sensor-2", &s2))).await.0, ConnectReturnCode::NotAuthorized);
    let (ok, out, _) = roost.cli(&["device", "list"]);
    assert!(ok && out.contains("sensor-2") && out.contains("REVOKED"), "{out}");
    drop(db);
    assert_eq!(count(&roost.db(), "env"), 2);
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loopback_quick_start_stays_open_but_not_under_a_device_name() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    mosquitto_pub(roost.mqtt, &["-q", "1", "-t", "devices/d/env", "-m", "{\"t\":1}"], "");
    let secret = add_device(&roost, "sensor-1");
    // An anonymous client may not take the device's client id (and with it its session).
    assert_eq!(connect(roost.mqtt, "sensor-1", None).await.0, ConnectReturnCode::NotAuthorized);
    assert_eq!(
        connect(roost.mqtt, "sensor-1", Some(("sensor-1", "guess"))).await.0,
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(
        connect(roost.mqtt, "sensor-1", Some(("sensor-1", &secret))).await.0,
        ConnectReturnCode::Success
    );
    // Rotating disconnects it and retires the old secret.
    let (ok, out, _) = roost.cli(&["device", "rotate", "sensor-1"]);
    assert!(ok);
    let new = out.lines().last().unwrap().trim().to_owned();
    assert_ne!(new, secret);
    assert_eq!(
        connect(roost.mqtt, "sensor-1", Some(("sensor-1", &secret))).await.0,
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(connect(roost.mqtt, "sensor-1", Some(("sensor-1", &new))).await.0, ConnectReturnCode::Success);
    roost.wait_status("the anonymous row", |s| s["sinks"][0]["records_written"] == 1).await;
    assert!(roost.stop().success());
}
