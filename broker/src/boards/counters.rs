//! [`BoardCounters`]: what the board service and the broker's board rules dropped or refused,
//! shown by `GET /api/v1/boards/counters` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of what the service dropped or refused.
#[derive(Debug, Default)]
pub struct BoardCounters {
    /// Replies whose request id belongs to another board.
    pub replies_forged: AtomicU64,
    /// Replies with a request id Roost does not know (or already finished).
    pub replies_unknown: AtomicU64,
    /// Replies that are not valid protocol messages.
    pub replies_malformed: AtomicU64,
    /// Statuses that are not valid protocol messages.
    pub statuses_malformed: AtomicU64,
    /// Client publishes refused under `roost/boards/` (cmd topics, other boards' topics).
    pub publishes_denied: AtomicU64,
    /// Subscriptions refused (other boards' cmd or reply topics).
    pub subscribes_denied: AtomicU64,
    /// Last wills on a topic the client may not publish to, neutralised.
    pub wills_refused: AtomicU64,
    /// Requests published.
    pub requests_sent: AtomicU64,
}

impl BoardCounters {
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            ("replies_forged", self.replies_forged.load(Relaxed)),
            ("replies_unknown", self.replies_unknown.load(Relaxed)),
            ("replies_malformed", self.replies_malformed.load(Relaxed)),
            ("statuses_malformed", self.statuses_malformed.load(Relaxed)),
            ("publishes_denied", self.publishes_denied.load(Relaxed)),
            ("subscribes_denied", self.subscribes_denied.load(Relaxed)),
            ("wills_refused", self.wills_refused.load(Relaxed)),
            ("requests_sent", self.requests_sent.load(Relaxed)),
        ])
    }
}
