//! Ingest: what the broker calls for every accepted PUBLISH. [`Ingest`] finds the pipelines
//! whose topic filters match and hands the message to each one's bounded mailbox (the
//! [`crate::pipeline`] actors read them), waiting while it is full, so a slow pipeline slows
//! publishers down instead of growing a queue. It counts what comes in, what no pipeline takes
//! and what it refuses while Roost stops.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use roost_core::{topic, Message};
use tokio::sync::mpsc;

use crate::stats::Stats;

/// The broker's way into the pipelines.
pub struct Ingest {
    routes: Vec<Route>,
    stats: Arc<Stats>,
}

struct Route {
    filters: Vec<String>,
    tx: mpsc::Sender<Message>,
}

/// Ingest is closed: Roost is stopping and takes no more messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Ingest {
    /// The ingest for the pipelines' topic filters and mailboxes, `(filters, mailbox)` each.
    pub fn new(routes: Vec<(Vec<String>, mpsc::Sender<Message>)>, stats: Arc<Stats>) -> Ingest {
        Ingest { routes: routes.into_iter().map(|(filters, tx)| Route { filters, tx }).collect(), stats }
    }

    /// Takes one accepted message. Returns once every matching pipeline has queued it.
    pub async fn accept(&self, msg: Message) -> Result<(), Closed> {
        let targets: Vec<&Route> =
            self.routes.iter().filter(|r| r.filters.iter().any(|f| topic::matches(f, &msg.topic))).collect();
        let Some((last, others)) = targets.split_last() else {
            self.stats.messages_in.fetch_add(1, Relaxed);
            self.stats.messages_unrouted.fetch_add(1, Relaxed);
            return Ok(());
        };
        for route in others {
            route.tx.send(msg.clone()).await.map_err(|_| self.refused())?;
        }
        last.tx.send(msg).await.map_err(|_| self.refused())?;
        self.stats.messages_in.fetch_add(1, Relaxed);
        Ok(())
    }

    fn refused(&self) -> Closed {
        self.stats.messages_refused.fetch_add(1, Relaxed);
        Closed
    }
}
