//! Ingest: what the broker calls for every accepted PUBLISH. [`Ingest`] finds the pipelines
//! whose topic filters match and hands the message to each one's bounded mailbox (the
//! [`crate::pipeline`] actors read them), waiting while it is full. For QoS 1 and 2 it then waits
//! until every pipeline has stored the message (its records on disk in every sink's spool, or
//! the message in the dead-letter store): the broker sends the PUBACK only after that. It counts
//! what comes in, what no pipeline takes and what it refuses while Roost stops.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use roost_core::{topic, Message};

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

    /// Takes one accepted message. Returns once every matching pipeline has stored it (QoS 1
    /// and 2) or queued it (QoS 0, which has no PUBACK to hold back).
    pub async fn accept(&self, msg: Message) -> Result<(), Closed> {
        let targets: Vec<&Route> =
            self.routes.iter().filter(|r| r.filters.iter().any(|f| topic::matches(f, &msg.topic))).collect();
        let Some((last, others)) = targets.split_last() else {
            self.stats.messages_in.fetch_add(1, Relaxed);
            self.stats.messages_unrouted.fetch_add(1, Relaxed);
            return Ok(());
        };
        let track = msg.qos > 0;
        let mut stored = Vec::with_capacity(targets.len());
        for route in others {
            stored.extend(route.mailbox.send(msg.clone(), track).await.map_err(|_| self.refused())?);
        }
        stored.extend(last.mailbox.send(msg, track).await.map_err(|_| self.refused())?);
        self.stats.messages_in.fetch_add(1, Relaxed);
        for done in stored {
            // Unanswered: the records could not be stored (Roost is stopping): no PUBACK.
            done.await.map_err(|_| self.refused())?;
        }
        Ok(())
    }

    fn refused(&self) -> Closed {
        self.stats.messages_refused.fetch_add(1, Relaxed);
        Closed
    }
}
