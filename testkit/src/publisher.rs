//! A QoS 1 publisher that knows exactly which messages the broker acknowledged, for the fault
//! tests and the durability benchmark: message `seq` (0, 1, 2, ...) carries `{"seq": seq}` in its
//! JSON payload, so it becomes a column the test can count, and a PUBACK marks exactly the seq
//! that went out under its packet id.
//!
//! Several connections publish at once, each with a window of messages in flight. Each one picks
//! the packet ids itself (a free one of `1..=window`) and hands rumqttc the publish with that id,
//! so the map from packet id to seq does not depend on the order rumqttc sends in. A connection
//! that breaks (the broker was killed, restarted, or refused it) is opened again, to the address
//! the test last put in the [`watch`] channel, and everything it had not seen acknowledged is
//! sent again: a re-send may store a message twice, which is MQTT's at-least-once and not
//! Roost's doing, so [`Outcome::sends`] counts the sends of every seq for the test to tell the two
//! apart.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Event, EventLoop, MqttOptions, Packet, QoS, Request};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Load {
    /// Client ids are `{name}-{c}` for connection `c`, and so is the device in the topic.
    pub name: String,
    /// The topic is `devices/{name}-{c}/{measurement}`: the table the rows land in.
    pub measurement: String,
    /// Seqs `0..messages`; connection `c` publishes those with `seq % connections == c`.
    pub messages: u64,
    pub connections: usize,
    /// Messages in flight per connection (at most 65,535).
    pub window: u16,
    /// The payload is padded with a `pad` string field to at least this many bytes.
    pub payload_bytes: usize,
    /// Messages per second over all connections; `None`: as fast as the broker acknowledges.
    pub rate: Option<f64>,
}

impl Load {
    /// `messages` seqs over `connections` connections of 100 in flight each, unpaced, with
    /// payloads of about 100 bytes.
    pub fn new(name: &str, measurement: &str, messages: u64, connections: usize) -> Load {
        Load {
            name: name.into(),
            measurement: measurement.into(),
            messages,
            connections,
            window: 100,
            payload_bytes: 100,
            rate: None,
        }
    }

    fn payload(&self, seq: u64) -> Vec<u8> {
        let mut p = format!(r#"{{"seq":{seq},"v":{},"pad":""#, seq as f64 / 4.0);
        while p.len() + 2 < self.payload_bytes {
            p.push('x');
        }
        p.push_str("\"}");
        p.into_bytes()
    }
}

/// Counters the test can watch while the publisher runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Distinct seqs acknowledged so far.
    pub acked: AtomicU64,
    /// Publishes handed to the connections (re-sends included).
    pub sent: AtomicU64,
    /// Connections opened (CONNACKs received); more than `connections` means reconnects.
    pub sessions: AtomicU64,
    /// Connections that broke or could not be opened.
    pub failures: AtomicU64,
}

/// What a finished run acknowledged and sent.
#[derive(Debug)]
pub struct Outcome {
    /// `acked[seq]`: a PUBACK came back for `seq`.
    pub acked: Vec<bool>,
    /// `sends[seq]`: how many times `seq` was handed to a connection (at least the times it went
    /// out on the wire).
    pub sends: Vec<u32>,
    pub sessions: u64,
    pub failures: u64,
    /// From the start until the last PUBACK.
    pub elapsed: Duration,
}

impl Outcome {
    pub fn acked_count(&self) -> u64 {
        self.acked.iter().filter(|a| **a).count() as u64
    }

    /// Seqs sent more than once: the only ones a database may hold twice.
    pub fn resent_count(&self) -> u64 {
        self.sends.iter().filter(|s| **s > 1).count() as u64
    }
}

/// A running publisher; [`Publisher::finish`] waits until every seq is acknowledged.
pub struct Publisher {
    progress: Arc<Progress>,
    tasks: Vec<JoinHandle<Vec<(u64, u32)>>>,
    messages: u64,
    started: Instant,
}

impl Publisher {
    /// Starts publishing `load` to the address in `addr`, which the test may change while it runs
    /// (a broker restarted on another port).
    pub fn start(load: Load, addr: watch::Receiver<SocketAddr>) -> Publisher {
        let progress = Arc::new(Progress::default());
        let load = Arc::new(load);
        let tasks = (0..load.connections)
            .map(|c| {
                let seqs = (c as u64..load.messages).step_by(load.connections).collect();
                tokio::spawn(connection(load.clone(), c, seqs, addr.clone(), progress.clone()))
            })
            .collect();
        Publisher { progress, tasks, messages: load.messages, started: Instant::now() }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Waits until every seq is acknowledged.
    ///
    /// # Panics
    ///
    /// When it takes longer than `patience`, saying how far it got.
    pub async fn finish(self, patience: Duration) -> Outcome {
        let mut acked = vec![false; self.messages as usize];
        let mut sends = vec![0; self.messages as usize];
        let until = tokio::time::Instant::now() + patience;
        for task in self.tasks {
            let Ok(done) = tokio::time::timeout_at(until, task).await else {
                panic!("publisher: {:?} after {patience:?}", self.progress);
            };
            for (seq, n) in done.unwrap() {
                acked[seq as usize] = true;
                sends[seq as usize] = n;
            }
        }
        let p = &self.progress;
        Outcome {
            acked,
            sends,
            sessions: p.sessions.load(Relaxed),
            failures: p.failures.load(Relaxed),
            elapsed: self.started.elapsed(),
        }
    }
}

/// One connection's seqs, published until each is acknowledged, over as many sessions as it
/// takes. Returns every seq with the number of times it was sent.
async fn connection(
    load: Arc<Load>,
    c: usize,
    seqs: VecDeque<u64>,
    addr: watch::Receiver<SocketAddr>,
    progress: Arc<Progress>,
) -> Vec<(u64, u32)> {
    let client_id = format!("{}-{c}", load.name);
    let topic = format!("devices/{client_id}/{}", load.measurement);
    let per_conn_rate = load.rate.map(|r| r / load.connections as f64);
    let mut s = Session {
        todo: seqs,
        in_flight: HashMap::new(),
        free: (1..=load.window).rev().collect(),
        sends: HashMap::new(),
        handed: 0,
    };
    let started = Instant::now();
    while !s.todo.is_empty() {
        let target = *addr.borrow();
        let mut opts = MqttOptions::new(&client_id, target.ip().to_string(), target.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(load.window);
        opts.set_clean_session(true);
        let mut eventloop = EventLoop::new(opts, 16);
        let mut connected = false;
        loop {
            if connected {
                let allowed = per_conn_rate.map(|r| (started.elapsed().as_secs_f64() * r) as u64);
                s.fill(&mut eventloop, &load, &topic, allowed, &progress);
                if s.todo.is_empty() && s.in_flight.is_empty() {
                    break;
                }
                if s.in_flight.is_empty() {
                    // Paced and nothing in flight: no event would wake the poll.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    progress.sessions.fetch_add(1, Relaxed);
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(seq) = s.in_flight.remove(&ack.pkid) {
                        s.free.push(ack.pkid);
                        debug_assert!(s.sends.contains_key(&seq));
                        progress.acked.fetch_add(1, Relaxed);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    progress.failures.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
        // Whatever was not acknowledged goes out again in the next session.
        let mut unacked: Vec<_> = s.in_flight.drain().collect();
        unacked.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
        for (pkid, seq) in unacked {
            s.todo.push_front(seq);
            s.free.push(pkid);
        }
        if !s.todo.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    s.sends.into_iter().collect()
}

/// One connection's state across its sessions.
struct Session {
    /// Seqs still to send, re-sends first.
    todo: VecDeque<u64>,
    in_flight: HashMap<u16, u64>,
    /// Packet ids not in flight.
    free: Vec<u16>,
    /// Sends per seq; a seq is in it once acknowledged or sent.
    sends: HashMap<u64, u32>,
    /// Distinct seqs handed to a session so far, for the pacing.
    handed: u64,
}

impl Session {
    /// Hands publishes to the event loop while a packet id is free (and the pace allows).
    fn fill(
        &mut self,
        eventloop: &mut EventLoop,
        load: &Load,
        topic: &str,
        allowed: Option<u64>,
        progress: &Progress,
    ) {
        while !self.free.is_empty() && !self.todo.is_empty() {
            let seq = self.todo[0];
            let first_send = !self.sends.contains_key(&seq);
            if first_send && allowed.is_some_and(|a| self.handed >= a) {
                return;
            }
            self.todo.pop_front();
            let pkid = self.free.pop().unwrap();
            let mut publish = rumqttc::Publish::new(topic, QoS::AtLeastOnce, load.payload(seq));
            publish.pkid = pkid;
            eventloop.pending.push_back(Request::Publish(publish));
            self.in_flight.insert(pkid, seq);
            *self.sends.entry(seq).or_insert(0) += 1;
            if first_send {
                self.handed += 1;
            }
            progress.sent.fetch_add(1, Relaxed);
        }
    }
}
