//! MQTT 3.1.1 packets written and read by hand, for what client libraries do not let a test do:
//! resend a QoS 2 PUBLISH with DUP after a reconnect, stop before PUBREL, speak over a WebSocket.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A packet's type (the high nibble of its first byte).
pub const CONNACK: u8 = 2;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBCOMP: u8 = 7;

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT, MQTT 3.1.1, keepalive 60 s.
pub fn connect(client_id: &str, clean_session: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(4);
    body.push(if clean_session { 0x02 } else { 0x00 });
    body.extend_from_slice(&60u16.to_be_bytes());
    string(client_id, &mut body);
    packet(0x10, &body)
}

/// PUBLISH at `qos` (1 or 2) with packet id `pid`.
pub fn publish(topic: &str, payload: &[u8], qos: u8, pid: u16, dup: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic, &mut body);
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend_from_slice(payload);
    packet(0x30 | (u8::from(dup) << 3) | (qos << 1), &body)
}

pub fn pubrel(pid: u16) -> Vec<u8> {
    packet(0x62, &pid.to_be_bytes())
}

pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0]
}

/// A whole packet from the front of `buf`, if it holds one: (type, body, its length).
fn parse(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (mut len, mut shift, mut i) = (0usize, 0, 1);
    loop {
        let byte = *buf.get(i)?;
        len |= usize::from(byte & 0x7F) << shift;
        shift += 7;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let body = buf.get(i..i + len)?.to_vec();
    Some((buf[0] >> 4, body, i + len))
}

/// One connection, over TCP or a WebSocket (subprotocol `mqtt`, binary frames).
pub enum Conn {
    Tcp(TcpStream, Vec<u8>),
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>, Vec<u8>),
}

impl Conn {
    /// Connects over TCP and sends CONNECT; the CONNACK's session-present flag.
    pub async fn tcp(addr: SocketAddr, client_id: &str, clean_session: bool) -> (Conn, bool) {
        let stream = TcpStream::connect(addr).await.unwrap();
        Conn::Tcp(stream, Vec::new()).handshake(client_id, clean_session).await
    }

    /// The same over a WebSocket at `ws://addr/mqtt`.
    pub async fn ws(addr: SocketAddr, client_id: &str, clean_session: bool) -> (Conn, bool) {
        let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Conn::Ws(Box::new(ws), Vec::new()).handshake(client_id, clean_session).await
    }

    async fn handshake(mut self, client_id: &str, clean_session: bool) -> (Conn, bool) {
        self.send(&connect(client_id, clean_session)).await;
        let (kind, body) = self.recv().await;
        assert_eq!(kind, CONNACK, "expected CONNACK");
        assert_eq!(body[1], 0, "CONNECT refused: return code {}", body[1]);
        (self, body[0] & 1 == 1)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        match self {
            Conn::Tcp(s, _) => s.write_all(bytes).await.unwrap(),
            Conn::Ws(ws, _) => ws.send(WsMessage::Binary(bytes.to_vec().into())).await.unwrap(),
        }
    }

    /// The next packet: (type, body). Panics after 10 s without one.
    pub async fn recv(&mut self) -> (u8, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(10), self.recv_inner()).await.expect("no packet within 10 s")
    }

    async fn recv_inner(&mut self) -> (u8, Vec<u8>) {
        loop {
            let buf = match self {
                Conn::Tcp(_, buf) | Conn::Ws(_, buf) => buf,
            };
            if let Some((kind, body, used)) = parse(buf) {
                buf.drain(..used);
                return (kind, body);
            }
            match self {
                Conn::Tcp(s, buf) => {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the broker closed the connection");
                    buf.extend_from_slice(&chunk[..n]);
                }
                Conn::Ws(ws, buf) => match ws.next().await.expect("the broker closed the websocket").unwrap()
                {
                    WsMessage::Binary(data) => buf.extend_from_slice(&data),
                    WsMessage::Close(_) => panic!("the broker closed the websocket"),
                    _ => {}
                },
            }
        }
    }

    /// Expects a packet of `kind` acknowledging `pid`.
    pub async fn expect_ack(&mut self, kind: u8, pid: u16) {
        let (got, body) = self.recv().await;
        assert_eq!(
            (got, &body[..2]),
            (kind, &pid.to_be_bytes()[..]),
            "expected packet type {kind} for {pid}"
        );
    }

    /// Sends DISCONNECT and closes.
    pub async fn close(mut self) {
        self.send(&disconnect()).await;
        if let Conn::Ws(ws, _) = &mut self {
            let _ = ws.send(WsMessage::Close(None)).await;
        }
    }
}
