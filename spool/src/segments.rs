//! The spool's directory: segment files named by their first sequence number, the cursor file
//! that says what has been consumed, and the scan that recovers both after a crash.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::frame::{self, Decoded};
use crate::SpoolError;

const SEGMENT_EXT: &str = "seg";
const CURSOR_FILE: &str = "cursor";
/// Bytes of one cursor slot: acked u64 | generation u64 | crc32 u32 | 4 spare.
const SLOT: usize = 24;

/// One segment file.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    /// The sequence number of its first entry (its file name).
    pub first_seq: u64,
    /// One past the sequence number of its last entry.
    pub next_seq: u64,
    /// Its length in bytes; the reader reads no further.
    pub len: u64,
    /// When its first entry was appended (ms since the epoch), if it has one.
    pub first_ms: Option<u64>,
}

impl Segment {
    pub fn path_for(dir: &Path, first_seq: u64) -> PathBuf {
        dir.join(format!("{first_seq:020}.{SEGMENT_EXT}"))
    }
}

/// What a scan of the directory found.
#[derive(Debug, Default)]
pub struct Scan {
    pub segments: Vec<Segment>,
    /// Bytes that were not valid frames (flipped bits, a torn tail).
    pub damaged_bytes: u64,
    /// Entries known lost in damaged ranges (from the gaps in sequence numbers).
    pub lost_entries: u64,
    /// Bytes cut off the end of the last segment (a write torn by a crash).
    pub torn_tail_bytes: u64,
}

pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SpoolError {
    let context = context.into();
    move |source| SpoolError::Io { context, source }
}

/// Opens the segments in `dir`, checks every frame, and cuts a torn or damaged tail off the
/// last segment so that appends continue after its last good frame.
pub fn scan(dir: &Path) -> Result<Scan, SpoolError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("reading spool directory {}", dir.display())))? {
        let entry = entry.map_err(io_err(format!("reading spool directory {}", dir.display())))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        if let Some(first) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
            names.push((first, path));
        }
    }
    names.sort();
    let mut scan = Scan::default();
    let count = names.len();
    for (i, (first_seq, path)) in names.into_iter().enumerate() {
        let mut buf = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_err(format!("reading spool segment {}", path.display())))?;
        let walked = walk(&buf, first_seq);
        scan.damaged_bytes += walked.damaged_bytes;
        scan.lost_entries += walked.lost_entries;
        let mut len = buf.len() as u64;
        if i + 1 == count && walked.good_end < buf.len() {
            // The last segment: appends continue after its last good frame.
            let cut = (buf.len() - walked.good_end) as u64;
            scan.torn_tail_bytes += cut;
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_len(walked.good_end as u64)?;
                    f.sync_data()
                })
                .map_err(io_err(format!("cutting the damaged tail of {}", path.display())))?;
            len = walked.good_end as u64;
        }
        scan.segments.push(Segment {
            path,
            first_seq,
            next_seq: walked.next_seq,
            len,
            first_ms: walked.first_ms,
        });
    }
    Ok(scan)
}

/// What walking the frames of one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// One past the last good entry's sequence number.
    pub next_seq: u64,
    /// The offset just past the last good frame.
    pub good_end: usize,
    pub damaged_bytes: u64,
    pub lost_entries: u64,
    /// When the first good entry was appended.
    pub first_ms: Option<u64>,
}

/// Walks the frames of a segment whose first entry is `first_seq`, skipping damage.
pub fn walk(buf: &[u8], first_seq: u64) -> Walk {
    walk_entries(buf, first_seq, |_, _| {})
}

/// [`walk`], handing each good entry's sequence number and payload to `visit`.
pub fn walk_entries(buf: &[u8], first_seq: u64, mut visit: impl FnMut(u64, &[u8])) -> Walk {
    let mut w = Walk { next_seq: first_seq, ..Walk::default() };
    let mut pos = 0;
    while pos < buf.len() {
        match frame::decode(buf, pos) {
            Decoded::Frame(f) => {
                w.first_ms.get_or_insert(f.appended_ms);
                visit(f.seq, &buf[f.payload.clone()]);
                w.lost_entries += f.seq.saturating_sub(w.next_seq);
                w.next_seq = w.next_seq.max(f.seq + 1);
                pos = f.end;
                w.good_end = pos;
            }
            // The buffer is the whole file: a frame that runs past its end is a torn tail, or
            // a damaged length if a good frame follows.
            Decoded::Incomplete | Decoded::Invalid => match frame::resync(buf, pos) {
                Some(next) => {
                    w.damaged_bytes += (next - pos) as u64;
                    pos = next;
                }
                None => break,
            },
        }
    }
    // Whatever follows the last good frame is a torn write or damage with nothing after it.
    w.damaged_bytes += (buf.len() - w.good_end) as u64;
    w
}

/// Creates an empty segment for entries from `first_seq` on, and makes its name durable.
pub fn create(dir: &Path, first_seq: u64, sync: bool) -> Result<(Segment, File), SpoolError> {
    let path = Segment::path_for(dir, first_seq);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(&path)
        .map_err(io_err(format!("creating spool segment {}", path.display())))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok((Segment { path, first_seq, next_seq: first_seq, len: 0, first_ms: None }, file))
}

pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing spool directory {}", dir.display())))
}

/// The consumer's position, kept in two alternating checksummed slots so that a write torn
/// by a crash leaves the previous position readable.
#[derive(Debug)]
pub struct Cursor {
    file: File,
    generation: u64,
}

impl Cursor {
    /// Opens (or creates) the cursor file; returns it and the acknowledged position (every
    /// entry below it is consumed).
    pub fn open(dir: &Path) -> Result<(Cursor, u64), SpoolError> {
        let path = dir.join(CURSOR_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("opening spool cursor {}", path.display())))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io_err(format!("reading spool cursor {}", path.display())))?;
        let best = buf
            .chunks_exact(SLOT)
            .filter_map(|slot| {
                let acked = u64::from_le_bytes(slot[0..8].try_into().unwrap());
                let generation = u64::from_le_bytes(slot[8..16].try_into().unwrap());
                let crc = u32::from_le_bytes(slot[16..20].try_into().unwrap());
                (crc32fast::hash(&slot[0..16]) == crc).then_some((generation, acked))
            })
            .max();
        let (generation, acked) = best.unwrap_or((0, 0));
        Ok((Cursor { file, generation }, acked))
    }

    /// Records that every entry below `acked` is consumed.
    pub fn store(&mut self, acked: u64, sync: bool) -> std::io::Result<()> {
        self.generation += 1;
        let mut slot = [0u8; SLOT];
        slot[0..8].copy_from_slice(&acked.to_le_bytes());
        slot[8..16].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32fast::hash(&slot[0..16]);
        slot[16..20].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&slot, (self.generation % 2) * SLOT as u64)?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Reads `len` bytes of `file` from `offset`.
pub fn read_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(seqs: std::ops::Range<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in seqs {
            frame::encode(&mut out, seq, 0, format!("entry {seq}").as_bytes());
        }
        out
    }

    #[test]
    fn walk_counts_damage_and_lost_entries() {
        let mut buf = frames(10..20);
        let clean = walk(&buf, 10);
        assert_eq!(
            clean,
            Walk { next_seq: 20, good_end: buf.len(), damaged_bytes: 0, lost_entries: 0, first_ms: Some(0) }
        );
        let frame_len = buf.len() / 10;
        buf[3 * frame_len + 30] ^= 1; // entry 13's payload
        let damaged = walk(&buf, 10);
        assert_eq!((damaged.next_seq, damaged.lost_entries), (20, 1));
        assert_eq!(damaged.damaged_bytes, frame_len as u64);
        assert_eq!(damaged.good_end, buf.len());
        buf.truncate(buf.len() - 5); // and a torn tail
        let torn = walk(&buf, 10);
        assert_eq!((torn.next_seq, torn.good_end), (19, 9 * frame_len));
        assert_eq!(torn.damaged_bytes, frame_len as u64 + (frame_len - 5) as u64);
    }

    #[test]
    fn cursor_survives_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, acked) = Cursor::open(dir.path()).unwrap();
        assert_eq!(acked, 0);
        c.store(5, true).unwrap();
        c.store(9, true).unwrap();
        assert_eq!(Cursor::open(dir.path()).unwrap().1, 9);
        // Tear the newest slot: the one before it is used.
        let f = OpenOptions::new().write(true).open(dir.path().join(CURSOR_FILE)).unwrap();
        f.write_all_at(&[0xff; 3], 0).unwrap();
        let (mut c, acked) = Cursor::open(dir.path()).unwrap();
        assert_eq!(acked, 5);
        c.store(11, true).unwrap();
        assert_eq!(Cursor::open(dir.path()).unwrap().1, 11);
    }
}
