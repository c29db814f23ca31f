//! QoS 2 exactly once across reconnects. Within one connection rmqtt answers a repeated QoS 2
//! PUBLISH (same packet id, before PUBREL) with PUBREC and does not take it again; but its
//! memory of received packet ids belongs to the connection, and a client that lost the PUBREC
//! resends the PUBLISH, DUP set, on its next connection (MQTT 5 allows resending only then).
//! This remembers, per client id whose session is kept, the packet ids of the last QoS 2 messages
//! Roost took, so such a resend is acknowledged without being stored a second time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Packet ids remembered per client: well over a client's QoS 2 messages in flight (at most
/// `mqtt.max_inflight`, 65,535 at the very most, usually far fewer).
const REMEMBERED: usize = 1024;

#[derive(Default)]
pub struct ExactlyOnce {
    seen: Mutex<HashMap<String, VecDeque<u16>>>,
}

/// What to do with a QoS 2 PUBLISH.
#[derive(Debug, PartialEq, Eq)]
pub enum Qos2 {
    /// Take it.
    New,
    /// A resend of one already taken: acknowledge it, do not take it again.
    Resent,
}

impl ExactlyOnce {
    /// Classifies a QoS 2 PUBLISH of `client` with `packet_id` and its DUP flag. A PUBLISH without
    /// DUP is always new (a client reuses a packet id only once the exchange that had it is over).
    pub fn check(&self, client: &str, packet_id: u16, dup: bool) -> Qos2 {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(client) {
            Some(ids) if dup && ids.contains(&packet_id) => Qos2::Resent,
            _ => Qos2::New,
        }
    }

    /// Remembers that `client`'s QoS 2 PUBLISH `packet_id` was taken.
    pub fn taken(&self, client: &str, packet_id: u16) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let ids = seen.entry(client.to_owned()).or_default();
        ids.retain(|&id| id != packet_id);
        if ids.len() == REMEMBERED {
            ids.pop_front();
        }
        ids.push_back(packet_id);
    }

    /// `client`'s session ended: nothing of it can be resent.
    pub fn forget(&self, client: &str) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resend_of_a_taken_message_is_recognised() {
        let once = ExactlyOnce::default();
        assert_eq!(once.check("c", 7, false), Qos2::New);
        once.taken("c", 7);
        assert_eq!(once.check("c", 7, true), Qos2::Resent);
        // Without DUP the id was reused for a new message; another client is another matter.
        assert_eq!(once.check("c", 7, false), Qos2::New);
        assert_eq!(once.check("d", 7, true), Qos2::New);
        // A DUP of a message never taken (its first send was lost) is taken.
        assert_eq!(once.check("c", 8, true), Qos2::New);
    }

    #[test]
    fn forgets_the_oldest_and_ended_sessions() {
        let once = ExactlyOnce::default();
        for id in 0..=REMEMBERED as u16 {
            once.taken("c", id);
        }
        assert_eq!(once.check("c", 0, true), Qos2::New);
        assert_eq!(once.check("c", 1, true), Qos2::Resent);
        once.forget("c");
        assert_eq!(once.check("c", 1, true), Qos2::New);
    }
}
