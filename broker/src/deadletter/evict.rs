//! Keeping the dead-letter store within `[deadletter]`'s bounds without losing what matters.
//!
//! Only message letters (`pipeline:` entries: payloads a pipeline could not read) are ever
//! evicted, oldest first: a device past `max_per_device` loses its own oldest, and past
//! `max_entries` or `max_bytes` the device with the most letters goes first. `sink:` entries
//! (records a database refused or could not take) are never evicted: if only they are left over
//! the bounds they are kept, and the caller warns.

use std::collections::BTreeSet;

use rusqlite::{params, OptionalExtension, Transaction};

/// The store's bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_entries: u64,
    pub max_bytes: u64,
    pub max_per_device: u64,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Evicted {
    /// Message letters deleted.
    pub deleted: u64,
    /// The store is still over its bounds: only `sink:` letters were left to delete.
    pub over_bounds: bool,
}

/// Brings the store within `limits`, after message letters of the devices in `owners` were added.
pub(super) fn evict(
    tx: &Transaction<'_>,
    limits: Limits,
    owners: &BTreeSet<String>,
) -> rusqlite::Result<Evicted> {
    let mut deleted = 0;
    for owner in owners {
        let n: i64 =
            tx.query_row("SELECT count(*) FROM dead_letters WHERE owner = ?1", [owner], |r| r.get(0))?;
        let excess = (n as u64).saturating_sub(limits.max_per_device);
        if excess > 0 {
            deleted += tx.execute(
                "DELETE FROM dead_letters WHERE id IN \
                 (SELECT id FROM dead_letters WHERE owner = ?1 ORDER BY id LIMIT ?2)",
                params![owner, excess as i64],
            )? as u64;
        }
    }
    loop {
        let (count, bytes): (i64, i64) =
            tx.query_row("SELECT count(*), coalesce(sum(size), 0) FROM dead_letters", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let (mut count, mut bytes) = (count as u64, bytes as u64);
        let over = |count: u64, bytes: u64| count > limits.max_entries || bytes > limits.max_bytes;
        if !over(count, bytes) {
            return Ok(Evicted { deleted, over_bounds: false });
        }
        let top: Option<String> = tx
            .query_row(
                "SELECT owner FROM dead_letters WHERE owner IS NOT NULL \
                 GROUP BY owner ORDER BY count(*) DESC, min(id) LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(owner) = top else {
            return Ok(Evicted { deleted, over_bounds: true });
        };
        let mut ids = Vec::new();
        {
            let mut stmt =
                tx.prepare_cached("SELECT id, size FROM dead_letters WHERE owner = ?1 ORDER BY id")?;
            let mut rows = stmt.query([&owner])?;
            while over(count, bytes) {
                let Some(r) = rows.next()? else { break };
                ids.push(r.get::<_, i64>(0)?);
                count -= 1;
                bytes = bytes.saturating_sub(r.get::<_, i64>(1)? as u64);
            }
        }
        let mut stmt = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
        for id in ids {
            deleted += stmt.execute([id])? as u64;
        }
    }
}
