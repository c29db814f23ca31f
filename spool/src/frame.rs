//! The on-disk frame of one entry, and how a run of bytes is read back into frames.
//!
//! A frame is a 28-byte header and the payload, all little-endian:
//!
//! ```text
//! magic u32 | len u32 | seq u64 | appended_ms u64 | crc32 u32 | payload (len bytes)
//! ```
//!
//! The CRC-32 covers `len`, `seq`, `appended_ms` and the payload, so a torn write (a header
//! without all of its payload) and a flipped bit both fail the check. After a bad frame the
//! reader looks for the next offset where a whole valid frame starts ([`resync`]): the damage
//! costs the entries it hit, not the rest of the segment.

/// Marks the start of every frame ("RSP1").
pub const MAGIC: u32 = 0x3150_5352;
/// Bytes before the payload.
pub const HEADER: usize = 28;
/// The largest payload a frame may carry; a header claiming more is damage.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// One frame found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub appended_ms: u64,
    /// Where the payload sits in the buffer it was decoded from.
    pub payload: std::ops::Range<usize>,
    /// The offset just past this frame.
    pub end: usize,
}

/// What the bytes at an offset hold. Damage to a frame's length can read as `Incomplete`: where
/// more bytes follow in the file, look for the next frame ([`resync`]) before calling it a torn
/// tail.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// A frame may start here but the buffer ends before it does: read more, or (at the end of
    /// a file) a torn tail.
    Incomplete,
    /// Not a valid frame.
    Invalid,
}

/// Appends the frame of one entry to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, appended_ms: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload checked against MAX_PAYLOAD");
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&appended_ms.to_le_bytes());
    out.extend_from_slice(&checksum(len, seq, appended_ms, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The encoded size of an entry of `payload_len` bytes.
pub fn size(payload_len: usize) -> u64 {
    (HEADER + payload_len) as u64
}

fn checksum(len: u32, seq: u64, appended_ms: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&appended_ms.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}

/// Decodes the frame starting at `pos` of `buf`.
pub fn decode(buf: &[u8], pos: usize) -> Decoded {
    let rest = &buf[pos.min(buf.len())..];
    if rest.len() < 4 {
        return if MAGIC.to_le_bytes().starts_with(rest) { Decoded::Incomplete } else { Decoded::Invalid };
    }
    if u32_at(rest, 0) != MAGIC {
        return Decoded::Invalid;
    }
    if rest.len() < HEADER {
        return Decoded::Incomplete;
    }
    let len = u32_at(rest, 4);
    if len as usize > MAX_PAYLOAD {
        return Decoded::Invalid;
    }
    let end = HEADER + len as usize;
    if rest.len() < end {
        return Decoded::Incomplete;
    }
    let (seq, appended_ms, crc) = (u64_at(rest, 8), u64_at(rest, 16), u32_at(rest, 24));
    if checksum(len, seq, appended_ms, &rest[HEADER..end]) != crc {
        return Decoded::Invalid;
    }
    Decoded::Frame(Frame { seq, appended_ms, payload: pos + HEADER..pos + end, end: pos + end })
}

/// The first offset after `pos` where a whole valid frame starts, if any.
pub fn resync(buf: &[u8], pos: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut at = pos + 1;
    while at + 4 <= buf.len() {
        let found = buf[at..].windows(4).position(|w| w == magic)?;
        at += found;
        if let Decoded::Frame(_) = decode(buf, at) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(entries: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, payload) in entries {
            encode(&mut out, *seq, 1_700_000_000_000 + seq, payload);
        }
        out
    }

    #[test]
    fn a_frame_round_trips() {
        let buf = frames(&[(7, b"hello"), (8, b"")]);
        let Decoded::Frame(first) = decode(&buf, 0) else { panic!() };
        assert_eq!((first.seq, &buf[first.payload.clone()]), (7, &b"hello"[..]));
        assert_eq!(first.appended_ms, 1_700_000_000_007);
        let Decoded::Frame(second) = decode(&buf, first.end) else { panic!() };
        assert_eq!((second.seq, second.payload.len(), second.end), (8, 0, buf.len()));
    }

    #[test]
    fn a_torn_frame_is_incomplete_and_a_flipped_bit_invalid() {
        let buf = frames(&[(1, b"payload")]);
        for cut in 1..buf.len() {
            assert_eq!(decode(&buf[..cut], 0), Decoded::Incomplete, "cut at {cut}");
        }
        for byte in 0..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            let got = decode(&bad, 0);
            if (4..8).contains(&byte) {
                // A damaged length reads as a frame running past the buffer, or an absurd one.
                assert!(
                    matches!(got, Decoded::Incomplete | Decoded::Invalid),
                    "flipped byte {byte}: {got:?}"
                );
            } else {
                assert_eq!(got, Decoded::Invalid, "flipped byte {byte}");
            }
        }
    }

    #[test]
    fn resync_finds_the_frame_after_damage() {
        let mut buf = frames(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        let second = HEADER + 3;
        buf[second + HEADER] ^= 0xff; // the payload of entry 2
        let Decoded::Frame(_) = decode(&buf, 0) else { panic!() };
        assert_eq!(decode(&buf, second), Decoded::Invalid);
        let third = resync(&buf, second).unwrap();
        let Decoded::Frame(f) = decode(&buf, third) else { panic!() };
        assert_eq!(f.seq, 3);
        assert_eq!(resync(&buf, third), None);
    }

    proptest! {
        // Whatever the damage, decoding never panics, and every frame it accepts is one that
        // was written.
        #[test]
        fn damage_never_yields_a_frame_that_was_not_written(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let entries: Vec<(u64, &[u8])> =
                payloads.iter().enumerate().map(|(i, p)| (i as u64, p.as_slice())).collect();
            let mut buf = frames(&entries);
            for (at, mask) in &flips {
                let i = at.index(buf.len());
                buf[i] ^= mask;
            }
            buf.truncate(cut.index(buf.len() + 1));
            let mut pos = 0;
            while pos < buf.len() {
                match decode(&buf, pos) {
                    Decoded::Frame(f) => {
                        let (seq, payload) = entries[f.seq as usize];
                        prop_assert_eq!(&buf[f.payload.clone()], payload);
                        prop_assert_eq!(f.seq, seq);
                        pos = f.end;
                    }
                    Decoded::Incomplete => break,
                    Decoded::Invalid => match resync(&buf, pos) {
                        Some(next) => pos = next,
                        None => break,
                    },
                }
            }
        }
    }
}
