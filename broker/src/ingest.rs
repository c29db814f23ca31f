//! Ingest: what the broker calls for every accepted PUBLISH. [`Ingest`] finds the pipelines
//! whose topic filters match and hands the message to each one's bounded mailbox (the
//! [`crate::pipeline`] actors read them), waiting while it is full. For QoS 1 and 2 it returns
//! a [`Stored`] that resolves once every pipeline has stored the message (its records on disk
//! in every sink's spool, or the message in the dead-letter store): the broker sends the PUBACK
//! only after that, while it goes on reading the connection's next publishes. It counts
//! what comes in, what no pipeline takes and what it refuses while Roost stops.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use roost_core::{topic, Message};
use tokio::sync::oneshot;

use crate::pipeline::Mailbox;
use crate::stats::Stats;

/// The broker's way into the pipelines.
pub struct Ingest {
    routes: Vec<Route>,
    stats: Arc<Stats>,
}

struct Route {
    filters: Vec<String>,
    mailbox: Mailbox,
}

/// Ingest is closed: Roost is stopping and takes no more messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Ingest {
    /// The ingest for the pipelines' topic filters and mailboxes, `(filters, mailbox)` each.
    pub fn new(routes: Vec<(Vec<String>, Mailbox)>, stats: Arc<Stats>) -> Ingest {
        Ingest {
            routes: routes.into_iter().map(|(filters, mailbox)| Route { filters, mailbox }).collect(),
            stats,
        }
    }

    /// Takes one accepted message: queues it on every matching pipeline, in the order messages
    /// come, and returns what resolves once they have all stored it (QoS 1 and 2; QoS 0 has no
    /// PUBACK to hold back and resolves at once). The broker sends the PUBACK only then.
    pub async fn accept(&self, msg: Message) -> Result<Stored, Closed> {
        let targets: Vec<&Route> =
            self.routes.iter().filter(|r| r.filters.iter().any(|f| topic::matches(f, &msg.topic))).collect();
        let mut stored = Stored { waits: Vec::with_capacity(targets.len()), stats: self.stats.clone() };
        let Some((last, others)) = targets.split_last() else {
            self.stats.messages_in.fetch_add(1, Relaxed);
            self.stats.messages_unrouted.fetch_add(1, Relaxed);
            return Ok(stored);
        };
        let track = msg.qos > 0;
        for route in others {
            stored.waits.extend(route.mailbox.send(msg.clone(), track).await.map_err(|_| self.refused())?);
        }
        stored.waits.extend(last.mailbox.send(msg, track).await.map_err(|_| self.refused())?);
        self.stats.messages_in.fetch_add(1, Relaxed);
        Ok(stored)
    }

    fn refused(&self) -> Closed {
        refused(&self.stats)
    }
}

fn refused(stats: &Stats) -> Closed {
    stats.messages_refused.fetch_add(1, Relaxed);
    Closed
}

/// A message queued on its pipelines, until they have stored it.
#[must_use = "the message may be acknowledged only once it is stored"]
pub struct Stored {
    waits: Vec<oneshot::Receiver<()>>,
    stats: Arc<Stats>,
}

impl Stored {
    /// Resolves once every pipeline has stored the message (its records on disk in every
    /// sink's spool, or the message in the dead-letter store), or fails if one could not
    /// (Roost is stopping): then no PUBACK may be sent.
    pub async fn wait(self) -> Result<(), Closed> {
        for done in self.waits {
            done.await.map_err(|_| refused(&self.stats))?;
        }
        Ok(())
    }
}
