//! The one consumer of a spool: reads durable entries in order and acknowledges them.

use std::fs::File;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::warn;

use crate::frame::{self, Decoded};
use crate::segments::{self, io_err, Segment};
use crate::{Shared, SpoolError};

/// Bytes read from a segment at once (more when one frame is larger).
const CHUNK: u64 = 1 << 20;

/// An entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// When it was appended (ms since the epoch).
    pub appended_ms: u64,
    pub data: Vec<u8>,
}

/// Where the reader is in a segment.
struct Position {
    first_seq: u64,
    file: File,
    offset: u64,
}

/// Reads the spool's entries in order; [`Reader::ack`] marks them consumed. Reads are blocking
/// file I/O (mostly from the page cache): call them from a blocking context.
pub struct Reader {
    shared: Arc<Shared>,
    /// The next sequence number to return.
    next: u64,
    pos: Option<Position>,
    durable: watch::Receiver<u64>,
    /// When the cursor was last synced.
    synced: Instant,
}

/// How often an acknowledgement also syncs the cursor file (see [`Reader::ack`]).
pub const CURSOR_SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("dir", &self.shared.dir).field("next", &self.next).finish()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.lock().reader_gone = true;
        self.shared.space.notify_all();
    }
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, acked: u64) -> Reader {
        let durable = shared.durable.subscribe();
        Reader { shared, next: acked, pos: None, durable, synced: Instant::now() }
    }

    /// Waits until there is an entry to read; `false` once the spool is closed and every
    /// entry has been read.
    pub async fn wait(&mut self) -> bool {
        loop {
            if *self.durable.borrow_and_update() > self.next {
                return true;
            }
            if self.shared.lock().closed {
                return false;
            }
            if self.durable.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Entries appended and not yet read.
    pub fn unread(&self) -> u64 {
        self.durable.borrow().saturating_sub(self.next)
    }

    /// Reads the next durable entries, up to `max_entries` or about `max_bytes` of payload;
    /// empty when there are none.
    pub fn read(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Entry>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut whole = false;
        while out.len() < max_entries && bytes < max_bytes {
            let (seg, is_last) = {
                let st = self.shared.lock();
                if self.next < st.acked {
                    // Dropped while full (drop-oldest): counted where they were dropped.
                    self.next = st.acked;
                    self.pos = None;
                }
                let i = st.segments.partition_point(|s| s.first_seq <= self.next).saturating_sub(1);
                match st.segments.get(i) {
                    Some(s) => (s.clone(), i + 1 == st.segments.len()),
                    None => break,
                }
            };
            if self.pos.as_ref().is_none_or(|p| p.first_seq != seg.first_seq) {
                let file = File::open(&seg.path)
                    .map_err(io_err(format!("opening spool segment {}", seg.path.display())))?;
                self.pos = Some(Position { first_seq: seg.first_seq, file, offset: 0 });
                whole = false;
            }
            let pos = self.pos.as_mut().unwrap();
            if pos.offset >= seg.len {
                if is_last {
                    break;
                }
                self.skip_to(seg.next_seq.max(self.next), &seg);
                continue;
            }
            let remaining = seg.len - pos.offset;
            let want = if whole { remaining } else { remaining.min(CHUNK) };
            let buf = segments::read_at(&pos.file, pos.offset, want as usize)
                .map_err(io_err(format!("reading spool segment {}", seg.path.display())))?;
            let mut at = 0;
            while at < buf.len() && out.len() < max_entries && bytes < max_bytes {
                match frame::decode(&buf, at) {
                    Decoded::Frame(f) => {
                        if f.seq >= self.next {
                            count_gap(&self.shared, self.next, f.seq, &seg);
                            bytes += f.payload.len();
                            out.push(Entry {
                                seq: f.seq,
                                appended_ms: f.appended_ms,
                                data: buf[f.payload].to_vec(),
                            });
                            self.next = f.seq + 1;
                        }
                        at = f.end;
                    }
                    Decoded::Incomplete if want < remaining => break,
                    // Within the whole rest of the segment: damage (a torn tail was cut on open).
                    Decoded::Incomplete | Decoded::Invalid => match frame::resync(&buf, at) {
                        Some(next) => {
                            warn!(segment = %seg.path.display(), offset = pos.offset + at as u64, bytes = next - at,
                                  "damaged spool entries skipped");
                            at = next;
                        }
                        None if want == remaining => {
                            warn!(segment = %seg.path.display(), offset = pos.offset + at as u64,
                                  bytes = buf.len() - at, "damaged end of a spool segment skipped");
                            at = buf.len();
                        }
                        None => break,
                    },
                }
            }
            pos.offset += at as u64;
            // Nothing decodable in a chunk: a frame larger than it, or damage; read the rest
            // of the segment whole next time.
            whole = at == 0;
        }
        let mut st = self.shared.lock();
        st.read = st.read.max(self.next);
        Ok(out)
    }

    fn skip_to(&mut self, next: u64, seg: &Segment) {
        count_gap(&self.shared, self.next, next, seg);
        self.next = next;
        self.pos = None;
    }

    /// Marks every entry up to and including `seq` consumed: the space of segments wholly
    /// consumed is freed, and a restart resumes after `seq`. The cursor is written at once
    /// (a crash of the process keeps it) and synced at most every [`CURSOR_SYNC_INTERVAL`]: after
    /// a power cut a restart may resume up to that much earlier and hand the consumer entries it
    /// had already consumed again (never fewer).
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let sync = self.shared.sync_enabled() && self.synced.elapsed() >= CURSOR_SYNC_INTERVAL;
        if sync {
            self.synced = Instant::now();
        }
        let mut st = self.shared.lock();
        if seq < st.acked {
            return Ok(());
        }
        st.acked = seq + 1;
        let acked = st.acked;
        st.cursor
            .store(acked, sync)
            .map_err(io_err(format!("storing the spool cursor in {}", self.shared.dir.display())))?;
        st.delete_consumed();
        drop(st);
        self.shared.space.notify_all();
        Ok(())
    }
}

/// Counts the entries from `expected` up to `seq` as lost to damage.
fn count_gap(shared: &Shared, expected: u64, seq: u64, seg: &Segment) {
    if seq > expected {
        let lost = seq - expected;
        shared.damaged.fetch_add(lost, Relaxed);
        warn!(segment = %seg.path.display(), from = expected, lost, "spool entries lost to damage");
    }
}
