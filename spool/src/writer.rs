//! The writer thread: group commit, segment rotation, the byte bound, and retrying writes that
//! fail (a full disk) until they succeed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tracing::{error, info, warn};

use crate::segments::{self, io_err};
use crate::{frame, now_ms, Append, FsyncPolicy, FullPolicy, Shared, SpoolError};

/// A group takes what is waiting up to about this many bytes.
const GROUP_BYTES: usize = 4 << 20;
/// How long a failing write waits before it is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

pub(crate) fn start(shared: Arc<Shared>, rx: Receiver<Append>) -> Result<(), SpoolError> {
    let (path, offset, next_seq) = {
        let st = shared.lock();
        let active = st.segments.back().expect("open keeps an active segment");
        (active.path.clone(), active.len, active.next_seq)
    };
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err(format!("opening spool segment {}", path.display())))?;
    let writer =
        Writer { shared, file, offset, next_seq, unsynced: false, last_sync: Instant::now(), failing: None };
    std::thread::Builder::new()
        .name("roost-spool".into())
        .spawn(move || writer.run(rx))
        .map_err(io_err("starting the spool writer thread"))?;
    Ok(())
}

struct Writer {
    shared: Arc<Shared>,
    /// The active segment.
    file: File,
    /// Where the next frame goes in it.
    offset: u64,
    next_seq: u64,
    /// Written but not synced (interval policy).
    unsynced: bool,
    last_sync: Instant,
    /// Since when writes have been failing, and the last error.
    failing: Option<(Instant, String)>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Append>) {
        while let Some(first) = self.next_append(&rx) {
            let mut group = vec![first];
            let mut bytes = group[0].bytes;
            while bytes < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(a) => {
                        bytes += a.bytes;
                        group.push(a);
                    }
                    Err(_) => break,
                }
            }
            if !self.make_room(bytes as u64) {
                for a in group {
                    let _ = a.done.send(Err(SpoolError::Closed));
                }
                continue;
            }
            let lasts = self.commit(&group, bytes);
            for (a, last) in group.into_iter().zip(lasts) {
                let _ = a.done.send(Ok(last));
            }
        }
        if self.unsynced {
            let _ = self.file.sync_data();
        }
        let mut st = self.shared.lock();
        st.closed = true;
        drop(st);
        self.shared.durable.send_modify(|_| {});
        self.shared.space.notify_all();
    }

    /// The next append, syncing on time meanwhile (interval policy); `None` once every
    /// handle is dropped.
    fn next_append(&mut self, rx: &Receiver<Append>) -> Option<Append> {
        loop {
            let FsyncPolicy::Interval(every) = self.shared.config.fsync else {
                return rx.recv().ok();
            };
            if !self.unsynced {
                return rx.recv().ok();
            }
            match rx.recv_timeout(every.saturating_sub(self.last_sync.elapsed())) {
                Ok(a) => return Some(a),
                Err(RecvTimeoutError::Timeout) => self.sync_now(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn sync_now(&mut self) {
        match self.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            Err(e) => {
                self.shared.write_errors.fetch_add(1, Relaxed);
                warn!(dir = %self.shared.dir.display(), error = %e, "spool sync failed; will try again");
            }
        }
    }

    /// Frees space for `bytes` more, as the full policy says; `false` if it never can (the
    /// reader is gone while the spool is full).
    fn make_room(&mut self, bytes: u64) -> bool {
        let max = self.shared.config.max_bytes;
        let mut st = self.shared.lock();
        loop {
            if st.bytes + bytes <= max {
                if st.full {
                    st.full = false;
                    info!(dir = %self.shared.dir.display(), "spool has room again");
                }
                return true;
            }
            if self.next_seq <= st.acked {
                // Everything is consumed. If the active segment holds the space, start a new
                // one (the consumed one is deleted); an empty spool takes any group.
                if self.offset == 0 {
                    return true;
                }
                drop(st);
                self.rotate();
                st = self.shared.lock();
                continue;
            }
            match self.shared.config.full {
                FullPolicy::DropOldest => {
                    if st.segments.len() == 1 {
                        drop(st);
                        self.rotate();
                        st = self.shared.lock();
                    }
                    let oldest = st.segments.pop_front().expect("a segment before the active one");
                    // Entries the reader holds are written (or dead-lettered) all the same.
                    let from = st.acked.max(st.read).max(oldest.first_seq);
                    let dropped = oldest.next_seq.saturating_sub(from);
                    st.bytes -= oldest.len;
                    st.acked = st.acked.max(oldest.next_seq);
                    let acked = st.acked;
                    if let Err(e) = st.cursor.store(acked, self.shared.sync_enabled()) {
                        warn!(dir = %self.shared.dir.display(), error = %e, "cannot store the spool cursor");
                    }
                    st.delete_consumed();
                    self.shared.dropped.fetch_add(dropped, Relaxed);
                    if let Some(weigh) = self.shared.config.weigh {
                        let weight = weigh_from(&oldest.path, oldest.first_seq, from, weigh);
                        self.shared.dropped_weight.fetch_add(weight, Relaxed);
                    }
                    if let Err(e) = std::fs::remove_file(&oldest.path) {
                        warn!(segment = %oldest.path.display(), error = %e, "cannot delete a dropped spool segment");
                    }
                    warn!(dir = %self.shared.dir.display(), dropped, "spool full: dropped its oldest segment");
                }
                FullPolicy::Block => {
                    if st.reader_gone {
                        return false;
                    }
                    if !st.full {
                        st.full = true;
                        warn!(dir = %self.shared.dir.display(), max_bytes = max, "spool full: appends wait for the sink to catch up");
                    }
                    st = self
                        .shared
                        .space
                        .wait_timeout(st, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Closes the active segment and starts the next one, retrying until it can.
    fn rotate(&mut self) {
        let sync = self.shared.sync_enabled();
        let (seg, file) = self.retry("starting a new spool segment", |w| {
            if sync {
                w.file.sync_data().map_err(io_err("syncing the spool segment"))?;
            }
            segments::create(&w.shared.dir, w.next_seq, sync)
        });
        self.file = file;
        self.offset = 0;
        self.unsynced = false;
        let mut st = self.shared.lock();
        st.segments.push_back(seg);
        st.delete_consumed();
    }

    /// Writes a group as one run of frames and makes it durable; returns each append's last
    /// sequence number.
    fn commit(&mut self, group: &[Append], bytes: usize) -> Vec<u64> {
        if self.offset >= self.shared.config.segment_bytes {
            self.rotate();
        }
        let first_seq = self.next_seq;
        let ms = now_ms();
        let mut buf = Vec::with_capacity(bytes);
        let mut lasts = Vec::with_capacity(group.len());
        let mut seq = first_seq;
        for a in group {
            for entry in &a.entries {
                frame::encode(&mut buf, seq, ms, entry);
                seq += 1;
            }
            lasts.push(seq.wrapping_sub(1));
        }
        let sync_now = match self.shared.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        let offset = self.offset;
        self.retry("writing to the spool", |w| {
            // On any failure the whole group is written again: after a failed fsync the
            // kernel may have dropped the pages, so syncing again alone proves nothing.
            let r = w.file.write_all_at(&buf, offset).and_then(|()| {
                if sync_now {
                    w.file.sync_data()
                } else {
                    Ok(())
                }
            });
            if r.is_err() {
                let _ = w.file.set_len(offset);
            }
            r.map_err(io_err("writing to the spool"))
        });
        if sync_now {
            self.last_sync = Instant::now();
        }
        self.unsynced = !sync_now && self.shared.config.fsync != FsyncPolicy::Never;
        self.offset += buf.len() as u64;
        self.next_seq = seq;
        let n = seq - first_seq;
        let mut st = self.shared.lock();
        if st.acked >= first_seq {
            st.marks.clear();
        }
        if st.marks.back().is_none_or(|(_, last)| last / 1000 != ms / 1000) {
            st.marks.push_back((first_seq, ms));
        }
        let active = st.segments.back_mut().expect("an active segment");
        active.len = self.offset;
        active.next_seq = seq;
        active.first_ms.get_or_insert(ms);
        st.bytes += buf.len() as u64;
        self.shared.durable.send_replace(seq);
        drop(st);
        self.shared.appended.fetch_add(n, Relaxed);
        self.shared.commits.fetch_add(1, Relaxed);
        lasts
    }

    /// Runs `op` until it succeeds, logging once when it starts failing and once when it
    /// recovers. Appends wait meanwhile: a full disk is backpressure, not loss.
    fn retry<T>(&mut self, what: &str, mut op: impl FnMut(&mut Self) -> Result<T, SpoolError>) -> T {
        loop {
            match op(self) {
                Ok(v) => {
                    if let Some((since, _)) = self.failing.take() {
                        info!(dir = %self.shared.dir.display(), failed_for_ms = since.elapsed().as_millis() as u64,
                              "spool writes work again");
                    }
                    return v;
                }
                Err(e) => {
                    self.shared.write_errors.fetch_add(1, Relaxed);
                    let msg = e.to_string();
                    if self.failing.as_ref().is_none_or(|(_, last)| *last != msg) {
                        error!(dir = %self.shared.dir.display(), error = %msg,
                               "{what} failed; appends wait and it is tried again every {} ms (free disk space if it is full)",
                               RETRY_EVERY.as_millis());
                    }
                    let since = self.failing.as_ref().map_or_else(Instant::now, |(s, _)| *s);
                    self.failing = Some((since, msg));
                    std::thread::sleep(RETRY_EVERY);
                }
            }
        }
    }
}

/// What the entries of the segment at `path` (its first entry `first_seq`) from `from` on weigh;
/// 0 if it cannot be read (the drop is counted in entries all the same).
fn weigh_from(path: &std::path::Path, first_seq: u64, from: u64, weigh: fn(&[u8]) -> u64) -> u64 {
    let buf = match std::fs::read(path) {
        Ok(buf) => buf,
        Err(e) => {
            warn!(segment = %path.display(), error = %e, "cannot read a dropped spool segment to count its records");
            return 0;
        }
    };
    let mut weight = 0;
    segments::walk_entries(&buf, first_seq, |seq, payload| {
        if seq >= from {
            weight += weigh(payload);
        }
    });
    weight
}
