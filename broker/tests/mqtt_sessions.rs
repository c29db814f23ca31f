//! The broker as devices rely on it, with real clients against the real `roost`: persistent
//! sessions (also across a restart), their bound, shared subscriptions, QoS 2 exactly once when
//! a client resends after a reconnect, and MQTT over WebSocket.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::raw::{self, Conn, PUBACK, PUBCOMP, PUBREC};
use common::{add_device, count, publish_all, Roost};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

/// A rumqttc (MQTT 3.1.1) subscriber.
struct Subscriber {
    client: AsyncClient,
    events: EventLoop,
    /// The CONNACK's session-present flag.
    session_present: bool,
}

impl Subscriber {
    async fn connect(addr: SocketAddr, client_id: &str, clean_session: bool) -> Subscriber {
        Subscriber::connect_as(addr, client_id, clean_session, None).await
    }

    /// With `credentials` (username, password).
    async fn connect_as(
        addr: SocketAddr,
        client_id: &str,
        clean_session: bool,
        credentials: Option<(&str, &str)>,
    ) -> Subscriber {
        let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        opts.set_clean_session(clean_session);
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(100);
        let (client, mut events) = AsyncClient::new(opts, 1000);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    return Subscriber { client, events, session_present: ack.session_present }
                }
                Ok(Ok(_)) => {}
                other => panic!("{client_id}: no CONNACK: {other:?}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        assert!(self.try_subscribe(filter).await, "subscription to {filter} refused");
    }

    /// Whether the SUBACK grants `filter`.
    async fn try_subscribe(&mut self, filter: &str) -> bool {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    return matches!(ack.return_codes[0], rumqttc::SubscribeReasonCode::Success(_));
                }
                Ok(Ok(_)) => {}
                other => panic!("no SUBACK for {filter}: {other:?}"),
            }
        }
    }

    /// Payloads of the PUBLISHes that arrive until `n` have or nothing arrives for `quiet`.
    async fn receive(&mut self, n: usize, quiet: Duration) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(quiet, self.events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    got.push(String::from_utf8(p.payload.to_vec()).unwrap())
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("subscriber error after {} messages: {e}", got.len()),
                Err(_) => break,
            }
        }
        got
    }

    /// A clean DISCONNECT (the session stays, if it is kept).
    async fn leave(mut self) {
        self.client.disconnect().await.unwrap();
        while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), self.events.poll()).await {
            if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    }
}

fn numbered(topic: &str, range: std::ops::Range<u32>) -> Vec<(String, Vec<u8>)> {
    range.map(|i| (topic.to_owned(), i.to_string().into_bytes())).collect()
}

fn as_set(payloads: &[String]) -> HashSet<u32> {
    payloads.iter().map(|p| p.parse().unwrap()).collect()
}

fn restart(roost: Roost, config: Option<&str>) -> Roost {
    let (dir, addr) = (roost.dir.clone(), roost.mqtt.to_string());
    let status = roost.stop();
    assert!(status.success(), "roost exit: {status}");
    Roost::start_with(&dir, config, &addr)
}

async fn metric(roost: &Roost, name: &str) -> f64 {
    let text = reqwest::get(roost.url("/metrics")).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_the_messages_published_while_it_was_away_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let mut sub = Subscriber::connect(roost.mqtt, "watcher", false).await;
    assert!(!sub.session_present);
    sub.subscribe("fleet/#").await;
    sub.leave().await;

    publish_all(roost.mqtt, "pub-1", numbered("fleet/a", 0..1000)).await;
    let mut sub = Subscriber::connect(roost.mqtt, "watcher", false).await;
    assert!(sub.session_present, "the session was kept");
    let got = sub.receive(1000, Duration::from_secs(10)).await;
    assert_eq!(as_set(&got), (0..1000).collect(), "{} messages", got.len());
    sub.leave().await;

    // Away again; Roost restarts meanwhile.
    publish_all(roost.mqtt, "pub-2", numbered("fleet/b", 1000..2000)).await;
    let roost = restart(roost, None);
    let mut sub = Subscriber::connect(roost.mqtt, "watcher", false).await;
    assert!(sub.session_present, "the session survived the restart");
    let got = sub.receive(1000, Duration::from_secs(10)).await;
    assert_eq!(as_set(&got), (1000..2000).collect(), "{} messages", got.len());
    // Its subscription survived too: what is published now arrives.
    publish_all(roost.mqtt, "pub-3", numbered("fleet/c", 2000..2010)).await;
    assert_eq!(as_set(&sub.receive(10, Duration::from_secs(10)).await), (2000..2010).collect());
    sub.leave().await;
    // A clean session ends it: nothing kept, nothing delivered later.
    let sub = Subscriber::connect(roost.mqtt, "watcher", true).await;
    assert!(!sub.session_present);
    sub.leave().await;
    publish_all(roost.mqtt, "pub-4", numbered("fleet/d", 0..5)).await;
    let mut sub = Subscriber::connect(roost.mqtt, "watcher", false).await;
    assert!(!sub.session_present);
    assert!(sub.receive(1, Duration::from_secs(2)).await.is_empty());
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_comes_back_with_its_subscriptions_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[mqtt.sessions]\ncheckpoint_secs = 1\n";
    let mut roost = Roost::start(dir.path(), Some(config));
    let mut sub = Subscriber::connect(roost.mqtt, "survivor", false).await;
    sub.subscribe("alarms/#").await;
    sub.leave().await;
    // Once a checkpoint holds the session, Roost is killed.
    let file = roost.dir.join("mqtt/sessions");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read(&file).is_ok_and(|b| b.windows(8).any(|w| w == b"survivor")) {
        assert!(std::time::Instant::now() < until, "no checkpoint of the session in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    roost_testkit::signal(roost.child.id(), nix::sys::signal::Signal::SIGKILL);
    roost.wait(Duration::from_secs(10));
    let roost = Roost::start_with(dir.path(), Some(config), &roost.mqtt.to_string());
    publish_all(roost.mqtt, "pub", numbered("alarms/fire", 0..5)).await;
    let mut sub = Subscriber::connect(roost.mqtt, "survivor", false).await;
    assert!(sub.session_present, "the session came back after the crash");
    assert_eq!(as_set(&sub.receive(5, Duration::from_secs(10)).await), (0..5).collect());
    sub.leave().await;
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_queues_at_most_max_queued_and_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[mqtt.sessions]\nmax_queued = 10\n";
    let roost = Roost::start(dir.path(), Some(config));
    let mut sub = Subscriber::connect(roost.mqtt, "slow", false).await;
    sub.subscribe("bulk/#").await;
    sub.leave().await;
    publish_all(roost.mqtt, "pub", numbered("bulk/x", 0..25)).await;
    let mut sub = Subscriber::connect(roost.mqtt, "slow", false).await;
    let got = sub.receive(25, Duration::from_secs(3)).await;
    assert_eq!(as_set(&got), (15..25).collect(), "the newest ten are kept");
    assert_eq!(metric(&roost, "roost_mqtt_dropped_total").await, 15.0);
    sub.leave().await;
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_splits_ten_thousand_messages_between_two_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let mut consumers = Vec::new();
    for name in ["worker-1", "worker-2"] {
        let mut c = Subscriber::connect(roost.mqtt, name, true).await;
        c.subscribe("$share/workers/jobs/#").await;
        consumers.push(tokio::spawn(async move { c.receive(10_000, Duration::from_secs(10)).await }));
    }
    publish_all(roost.mqtt, "producer", numbered("jobs/new", 0..10_000)).await;
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    for c in consumers {
        let got = c.await.unwrap();
        sizes.push(got.len());
        all.extend(got);
    }
    assert!(sizes.iter().all(|&n| n > 0), "both consumers get a share: {sizes:?}");
    assert_eq!(all.len(), 10_000, "none lost or doubled: {sizes:?}");
    assert_eq!(as_set(&all), (0..10_000).collect());
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_follows_the_topic_rules_of_its_filter() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let secret = add_device(&roost, "d-1");
    let mut device = Subscriber::connect_as(roost.mqtt, "d-1", true, Some(("d-1", &secret))).await;
    assert!(device.try_subscribe("$share/g/devices/d-1/#").await, "its own topics");
    assert!(!device.try_subscribe("$share/g/devices/d-2/#").await, "another device's topics");
    let mut anonymous = Subscriber::connect(roost.mqtt, "watcher", true).await;
    assert!(!anonymous.try_subscribe("$share/g/roost/boards/+/cmd").await, "boards' commands");
    assert!(anonymous.try_subscribe("$share/g/roost/boards/+/status").await, "boards' statuses");
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_publish_resent_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let topic = "devices/q2/reading";
    // Resent on the same connection before PUBREL.
    let (mut c, _) = Conn::tcp(roost.mqtt, "q2", false).await;
    c.send(&raw::publish(topic, br#"{"n":1}"#, 2, 1, false)).await;
    c.expect_ack(PUBREC, 1).await;
    c.send(&raw::publish(topic, br#"{"n":1}"#, 2, 1, true)).await;
    c.expect_ack(PUBREC, 1).await;
    c.send(&raw::pubrel(1)).await;
    c.expect_ack(PUBCOMP, 1).await;
    // The PUBREC is lost with the connection; the client resends on its next one.
    c.send(&raw::publish(topic, br#"{"n":2}"#, 2, 2, false)).await;
    c.expect_ack(PUBREC, 2).await;
    drop(c);
    let (mut c, present) = Conn::tcp(roost.mqtt, "q2", false).await;
    assert!(present);
    c.send(&raw::publish(topic, br#"{"n":2}"#, 2, 2, true)).await;
    c.expect_ack(PUBREC, 2).await;
    c.send(&raw::pubrel(2)).await;
    c.expect_ack(PUBCOMP, 2).await;
    // A first send that never arrived, only its resend: stored.
    c.send(&raw::publish(topic, br#"{"n":3}"#, 2, 3, true)).await;
    c.expect_ack(PUBREC, 3).await;
    c.send(&raw::pubrel(3)).await;
    c.expect_ack(PUBCOMP, 3).await;
    // The packet id used again for a new message (no DUP): stored.
    c.send(&raw::publish(topic, br#"{"n":4}"#, 2, 1, false)).await;
    c.expect_ack(PUBREC, 1).await;
    c.send(&raw::pubrel(1)).await;
    c.expect_ack(PUBCOMP, 1).await;
    c.close().await;
    assert_eq!(metric(&roost, "roost_mqtt_qos2_resent_total").await, 1.0);
    let db = roost.db();
    assert!(roost.stop().success());
    let ns: Vec<i64> = db
        .prepare("SELECT n FROM reading ORDER BY n")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ns, [1, 2, 3, 4], "each message stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_publishes_and_the_row_appears() {
    let dir = tempfile::tempdir().unwrap();
    let ws: SocketAddr = format!("127.0.0.1:{}", roost_testkit::free_port()).parse().unwrap();
    let roost = Roost::start(dir.path(), Some(&format!("[mqtt]\nws_listen = \"{ws}\"\n")));
    let (mut c, _) = Conn::ws(ws, "browser-1", true).await;
    for pid in 1..=3u16 {
        c.send(&raw::publish(
            "devices/browser-1/env",
            format!("{{\"temp\":{pid}}}").as_bytes(),
            1,
            pid,
            false,
        ))
        .await;
        c.expect_ack(PUBACK, pid).await;
    }
    c.close().await;
    // A client without the `mqtt` subprotocol is refused at the handshake, and nothing breaks.
    let refused = tokio_tungstenite::connect_async(format!("ws://{ws}/mqtt")).await;
    assert!(refused.is_err(), "a websocket without the mqtt subprotocol was accepted");
    let db = roost.db();
    assert!(roost.stop().success());
    assert_eq!(count(&db, "env"), 3);
    let temps: i64 = db.query_row("SELECT sum(temp) FROM env", [], |r| r.get(0)).unwrap();
    assert_eq!(temps, 6);
}
