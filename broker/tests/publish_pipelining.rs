//! A connection's publishes are taken while earlier ones wait for the disk (our patch to
//! rmqtt, `deferred_ack`): a client that sends many QoS 1 or 2 publishes without waiting gets
//! every acknowledgement, in the order it published (MQTT-4.6.0-2 for PUBACK, MQTT-4.6.0-3 for
//! PUBREC), is never disconnected for sending more than the broker's in-flight window, and each
//! message is stored once. A plain TCP client writes the packets, so nothing waits in between.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Roost;

/// More in flight than the window (4) holds, so the broker must stop reading, not disconnect.
const CONFIG: &str = "[mqtt]\nmax_inflight = 4\n";

struct RawClient(TcpStream);

impl RawClient {
    /// An MQTT 3.1.1 connection with a clean session, CONNACK checked.
    fn connect(roost: &Roost, client_id: &str) -> RawClient {
        let stream = TcpStream::connect(roost.mqtt).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut body = Vec::new();
        put_str(&mut body, "MQTT");
        body.extend([4, 0x02, 0, 60]); // level 4, clean session, keepalive 60 s
        put_str(&mut body, client_id);
        let mut client = RawClient(stream);
        client.send(&packet(0x10, &body));
        assert_eq!(client.read(4), [0x20, 2, 0, 0], "CONNACK accepted");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.0.read_exact(&mut buf).unwrap_or_else(|e| panic!("reading {n} bytes from roost: {e}"));
        buf
    }

    /// Reads `n` acknowledgements of type `kind` and returns their packet ids, in order.
    fn acks(&mut self, kind: u8, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let ack = self.read(4);
                assert_eq!(&ack[..2], [kind, 2], "acknowledgement {ack:?}");
                u16::from_be_bytes([ack[2], ack[3]])
            })
            .collect()
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u16).to_be_bytes());
    buf.extend(s.as_bytes());
}

/// A packet with its fixed header (the remaining length as a variable byte integer).
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

/// PUBLISH packets for `ids` at `qos`, all in one buffer.
fn publishes(qos: u8, ids: std::ops::RangeInclusive<u16>, device: &str) -> Vec<u8> {
    ids.flat_map(|id| {
        let mut body = Vec::new();
        put_str(&mut body, &format!("devices/{device}/env"));
        body.extend(id.to_be_bytes());
        body.extend(format!("{{\"seq\":{id}}}").as_bytes());
        packet(0x30 | (qos << 1), &body)
    })
    .collect()
}

fn stored(roost: &Roost, device: &str) -> (i64, i64) {
    roost
        .db()
        .query_row("SELECT count(*), count(DISTINCT seq) FROM env WHERE device = ?1", [device], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
}

#[test]
fn qos1_publishes_sent_at_once_are_acked_in_order_past_the_window_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(CONFIG));
    let mut client = RawClient::connect(&roost, "pipe-1");
    client.send(&publishes(1, 1..=2000, "pipe-1"));
    assert_eq!(client.acks(0x40, 2000), (1..=2000).collect::<Vec<u16>>());
    client.send(&[0xE0, 0]); // DISCONNECT
    let (status, log) = roost.stop_with_log();
    assert!(status.success(), "roost exit: {status}\n{log}");
    let roost = Roost::start(dir.path(), Some(CONFIG));
    assert_eq!(stored(&roost, "pipe-1"), (2000, 2000));
}

#[test]
fn qos2_publishes_sent_at_once_get_pubrecs_in_order_and_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(CONFIG));
    let mut client = RawClient::connect(&roost, "pipe-2");
    // The window is 4 and a QoS 2 message holds its place until PUBREL: send a window at a time.
    for round in 0..50u16 {
        let ids = round * 4 + 1..=round * 4 + 4;
        client.send(&publishes(2, ids.clone(), "pipe-2"));
        assert_eq!(client.acks(0x50, 4), ids.clone().collect::<Vec<u16>>(), "PUBREC order");
        let releases: Vec<u8> = ids.clone().flat_map(|id| packet(0x62, &id.to_be_bytes())).collect();
        client.send(&releases);
        assert_eq!(client.acks(0x70, 4), ids.collect::<Vec<u16>>(), "PUBCOMP order");
    }
    client.send(&[0xE0, 0]);
    let (status, log) = roost.stop_with_log();
    assert!(status.success(), "roost exit: {status}\n{log}");
    let roost = Roost::start(dir.path(), Some(CONFIG));
    assert_eq!(stored(&roost, "pipe-2"), (200, 200));
}
