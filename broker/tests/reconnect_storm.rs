//! A reconnect storm against the real binary: many clients, each with its own fixed client id,
//! reconnecting over and over at once (clean disconnects, abrupt drops, and two connects with
//! one id at the same moment). MQTT says the newer connection takes over, so no CONNACK may
//! ever refuse one of them.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Roost;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};

const CLIENTS: usize = 100;
const ROUNDS: usize = 100;
/// Every this many rounds, a client opens two connections with its id at the same moment.
const PAIR_EVERY: usize = 10;
/// Generous: only a hung broker takes this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// What happened to the connections of the storm.
#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    /// CONNACKs that did not accept the connection, and their codes.
    refused: AtomicUsize,
    refusals: std::sync::Mutex<Vec<String>>,
    /// Connections that failed without any CONNACK (closed, reset, timed out).
    failed: AtomicUsize,
}

impl Tally {
    fn refuse(&self, client_id: &str, why: String) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.refusals.lock().unwrap().push(format!("{client_id}: {why}"));
    }
}

/// Opens one connection and waits for its CONNACK. Returns the client and its event loop when
/// the broker accepted it; counts the outcome either way.
async fn connect(addr: SocketAddr, client_id: &str, tally: &Tally) -> Option<(AsyncClient, EventLoop)> {
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(PATIENCE, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                if ack.code == rumqttc::ConnectReturnCode::Success {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                    return Some((client, eventloop));
                }
                tally.refuse(client_id, format!("{:?}", ack.code));
                return None;
            }
            Ok(Ok(_)) => {}
            Ok(Err(ConnectionError::ConnectionRefused(code))) => {
                tally.refuse(client_id, format!("{code:?}"));
                return None;
            }
            Ok(Err(_)) | Err(_) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
}

/// Ends a connection either with a DISCONNECT or by dropping the TCP connection without one.
async fn end(connection: Option<(AsyncClient, EventLoop)>, clean: bool) {
    let Some((client, mut eventloop)) = connection else { return };
    if clean {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(PATIENCE, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    // Dropping the event loop closes the socket: after a DISCONNECT, or abruptly.
}

/// One client's storm: `ROUNDS` connections with its fixed id, then one that must stay up.
async fn storm(addr: SocketAddr, n: usize, tally: Arc<Tally>) -> bool {
    let client_id = format!("storm-{n}");
    for round in 0..ROUNDS {
        let clean = (round + n).is_multiple_of(3);
        if round % PAIR_EVERY == PAIR_EVERY - 1 {
            let (a, b) = tokio::join!(connect(addr, &client_id, &tally), connect(addr, &client_id, &tally));
            tokio::join!(end(a, clean), end(b, clean));
        } else {
            let connection = connect(addr, &client_id, &tally).await;
            end(connection, clean).await;
        }
    }
    // The last connection must be accepted and stay usable: a SUBACK comes back on it.
    let Some((client, mut eventloop)) = connect(addr, &client_id, &tally).await else { return false };
    client.subscribe(format!("storm/{n}"), QoS::AtLeastOnce).await.unwrap();
    let subscribed = tokio::time::timeout(PATIENCE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    end(Some((client, eventloop)), true).await;
    subscribed
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnect_storm_with_fixed_client_ids_is_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), None);
    let tally = Arc::new(Tally::default());
    let storms: Vec<_> = (0..CLIENTS).map(|n| tokio::spawn(storm(roost.mqtt, n, tally.clone()))).collect();
    let mut ended_connected = 0;
    for storm in storms {
        if storm.await.unwrap() {
            ended_connected += 1;
        }
    }
    let refused = tally.refused.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let accepted = tally.accepted.load(Ordering::Relaxed);
    eprintln!("reconnect storm: {accepted} accepted, {refused} refused, {failed} failed without a CONNACK");
    let (status, log) = roost.stop_with_log();
    let warnings: Vec<_> =
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(20).collect();
    let refusals = tally.refusals.lock().unwrap();
    assert_eq!(
        refused,
        0,
        "refused CONNACKs (first 20): {:?}\nwarnings in the log (first 20):\n{}",
        &refusals[..refusals.len().min(20)],
        warnings.join("\n")
    );
    assert_eq!(failed, 0, "connections that failed without a CONNACK");
    assert_eq!(ended_connected, CLIENTS, "clients whose last connection was accepted and usable");
    assert!(status.success(), "roost did not stop cleanly:\n{log}");
}
