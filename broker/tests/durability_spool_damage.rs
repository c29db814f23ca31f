//! A sink's spool damaged while Roost is down: one segment with flipped bytes in the middle of a
//! frame, the last one cut off in the middle of its last frame. Roost starts, writes every record
//! of the good frames (exactly: the seqs in the two damaged frames are the only ones missing, and
//! none is written twice), and reports the damage in its log and in `GET /api/v1/sinks`.
//!
//! The records get into the spool and stay there because the sink's database is unreachable
//! (nothing listens at its address) when they are published; Roost is then SIGKILLed, the spool
//! damaged, and Roost started again with the database's real address.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::durability::{pg_schema, pg_stored, sinks, wait_drained};
use common::Roost;
use roost_testkit::publisher::{Load, Publisher};
use roost_testkit::{env_url, free_port, signal};
use tokio::sync::watch;

const MESSAGES: u64 = 300;
/// A spool frame's header: magic u32, len u32, seq u64, appended_ms u64, crc32 u32.
const HEADER: usize = 28;

/// One frame found in a segment: where it is, and the message seqs of the records it holds.
#[derive(Debug)]
struct Frame {
    segment: PathBuf,
    offset: usize,
    len: usize,
    seqs: Vec<u64>,
}

/// The frames of every segment in `dir`, in order.
fn frames(dir: &Path) -> Vec<Frame> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("no spool at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let mut frames = Vec::new();
    for segment in segments {
        let buf = std::fs::read(&segment).unwrap();
        let mut offset = 0;
        while offset + HEADER <= buf.len() {
            let len = u32::from_le_bytes(buf[offset + 4..offset + 8].try_into().unwrap()) as usize;
            let payload =
                buf.get(offset + HEADER..offset + HEADER + len).expect("a whole frame before any damage");
            frames.push(Frame {
                segment: segment.clone(),
                offset,
                len: HEADER + len,
                seqs: seqs_in(payload),
            });
            offset += HEADER + len;
        }
        assert_eq!(offset, buf.len(), "{} ends inside a frame before any damage", segment.display());
    }
    frames
}

/// The values of the integer field `seq` in an encoded chunk of records: the key `seq`, the tag
/// of an integer (0), then 8 bytes little-endian. Nothing else in these records spells `seq`.
fn seqs_in(payload: &[u8]) -> Vec<u64> {
    let key = b"seq\0";
    (0..payload.len().saturating_sub(key.len() + 8))
        .filter(|i| &payload[*i..*i + key.len()] == key)
        .map(|i| u64::from_le_bytes(payload[i + key.len()..i + key.len() + 8].try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_spool_keeps_its_good_frames_and_reports_the_rest() {
    let pg = env_url("ROOST_TEST_POSTGRES_URL");
    let schema = pg_schema(&pg, "damage").await;
    let host = pg.split('@').nth(1).unwrap().split('/').next().unwrap();
    let nowhere = pg.replacen(host, &format!("127.0.0.1:{}", free_port()), 1);
    let config = |url: &str| {
        format!(
            "[spool]\nsegment_bytes = 4096\n\n[[sinks]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\nlinger_ms = 20\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut roost = Roost::start(dir.path(), Some(&config(&nowhere)));
    let (_addr, addr_rx) = watch::channel(roost.mqtt);
    let mut load = Load::new("damage", "env", MESSAGES, 1);
    load.window = 1;
    let outcome = Publisher::start(load, addr_rx).finish(Duration::from_secs(120)).await;
    assert_eq!(outcome.acked_count(), MESSAGES);
    signal(roost.child.id(), nix::sys::signal::Signal::SIGKILL);
    roost.wait(Duration::from_secs(10));
    drop(roost);

    let spool = dir.path().join("spool").join("pg");
    let frames = frames(&spool);
    let spooled: BTreeSet<u64> = frames.iter().flat_map(|f| f.seqs.iter().copied()).collect();
    assert_eq!(spooled.len() as u64, MESSAGES, "every acknowledged message is in the spool");
    let last_segment = &frames.last().unwrap().segment;
    let segments: BTreeSet<&PathBuf> = frames.iter().map(|f| &f.segment).collect();
    assert!(segments.len() >= 3, "want several segments to damage, got {}", segments.len());
    // Flip bytes in the middle of a frame of an earlier segment...
    let second: Vec<&Frame> =
        frames.iter().filter(|f| &f.segment == *segments.iter().nth(1).unwrap()).collect();
    let flipped = second[second.len() / 2];
    let mut bytes = std::fs::read(&flipped.segment).unwrap();
    let middle = flipped.offset + HEADER + (flipped.len - HEADER) / 2;
    for b in &mut bytes[middle..middle + 4] {
        *b ^= 0xa5;
    }
    std::fs::write(&flipped.segment, bytes).unwrap();
    // ...and cut the last segment in the middle of its last frame.
    let torn = frames.last().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(last_segment).unwrap();
    file.set_len((torn.offset + torn.len / 2) as u64).unwrap();
    drop(file);
    let lost: BTreeSet<u64> = flipped.seqs.iter().chain(&torn.seqs).copied().collect();
    eprintln!(
        "spool: {} frames in {} segments; damaged: frame at {} of {} (seqs {:?}), torn: last frame of {} (seqs {:?})",
        frames.len(),
        segments.len(),
        flipped.offset,
        flipped.segment.display(),
        flipped.seqs,
        last_segment.display(),
        torn.seqs
    );

    let roost = Roost::start(dir.path(), Some(&config(&pg)));
    wait_drained(&roost, Duration::from_secs(60)).await;
    let report = sinks(&roost).await.expect("GET /api/v1/sinks");
    let stored = pg_stored(&pg, &schema, "env").await;
    let (_, log) = roost.stop_with_log();
    let want: BTreeSet<u64> = spooled.difference(&lost).copied().collect();
    let got: BTreeSet<u64> = stored.0.keys().copied().collect();
    eprintln!(
        "after the restart: {} rows stored, {} seqs lost to the damage, {} seqs twice; the sink reports {}",
        stored.rows(),
        lost.len(),
        stored.duplicates(),
        report[0]["spool"]
    );
    assert_eq!(got, want, "the good frames' records, no more, no less\n{log}");
    assert_eq!(stored.duplicates(), 0, "none twice");
    let spool_report = &report[0]["spool"];
    assert!(spool_report["damaged_bytes_on_open"].as_u64() > Some(0), "damage reported: {report:#}");
    assert!(log.contains("damaged"), "damage logged:\n{log}");
}
