//! The spool against a real file system: order, restart, damage, the byte bound, a full disk.

use std::time::Duration;

use super::*;

fn config() -> SpoolConfig {
    SpoolConfig { segment_bytes: 4096, ..SpoolConfig::default() }
}

fn entries(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("entry {i:05}").into_bytes()).collect()
}

fn read_all(reader: &mut Reader) -> Vec<Entry> {
    let mut out = Vec::new();
    loop {
        let got = reader.read(1000, 1 << 20).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn texts(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8(e.data.clone()).unwrap()).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn entries_come_back_in_order_and_acks_free_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, recovery) = Spool::open(dir.path(), config()).unwrap();
    assert_eq!(recovery, Recovery::default());
    for chunk in (0..1000).step_by(50) {
        let last = spool.append(entries(chunk..chunk + 50)).await.unwrap();
        assert_eq!(last, u64::from(chunk) + 49);
    }
    assert!(segment_files(dir.path()).len() > 5, "4 KiB segments rotate");
    let stats = spool.stats();
    assert_eq!((stats.entries, stats.appended_total), (1000, 1000));
    assert!(stats.oldest_age.is_some());

    let got = read_all(&mut reader);
    assert_eq!(texts(&got), texts_of(0..1000));
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..1000).collect::<Vec<_>>());
    reader.ack(499).unwrap();
    let bytes_half = spool.stats().bytes;
    reader.ack(999).unwrap();
    let stats = spool.stats();
    assert_eq!((stats.entries, stats.oldest_age), (0, None));
    assert!(stats.bytes < bytes_half, "consumed segments are deleted");
    assert_eq!(segment_files(dir.path()).len(), 1, "only the active segment is left");
}

fn texts_of(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("entry {i:05}")).collect()
}

#[tokio::test]
async fn a_restart_resumes_after_the_last_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, mut reader, _) = Spool::open(dir.path(), config()).unwrap();
        spool.append(entries(0..300)).await.unwrap();
        assert_eq!(read_all(&mut reader).len(), 300);
        reader.ack(119).unwrap();
    }
    let (spool, mut reader, recovery) = Spool::open(dir.path(), config()).unwrap();
    assert_eq!((recovery.entries, recovery.damaged_bytes), (180, 0));
    assert_eq!(texts(&read_all(&mut reader)), texts_of(120..300));
    // New entries continue the numbering.
    assert_eq!(spool.append(entries(300..301)).await.unwrap(), 300);
    assert_eq!(read_all(&mut reader)[0].seq, 300);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_good_prefix_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _reader, _) = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        spool.append(entries(0..50)).await.unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap(); // the last entry's write was torn by a crash
    let (spool, mut reader, recovery) = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let frame_len = frame::size("entry 00000".len());
    assert_eq!(recovery.torn_tail_bytes, frame_len - 7);
    assert_eq!(recovery.entries, 49);
    assert_eq!(texts(&read_all(&mut reader)), texts_of(0..49));
    // The torn entry's number is used again: it was never acknowledged to anyone.
    assert_eq!(spool.append(entries(49..50)).await.unwrap(), 49);
    assert_eq!(texts(&read_all(&mut reader)), texts_of(49..50));
}

#[tokio::test]
async fn flipped_bytes_lose_only_the_entries_they_hit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _reader, _) = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        spool.append(entries(0..100)).await.unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let frame_len = frame::size("entry 00000".len()) as usize;
    bytes[10 * frame_len + 30] ^= 0x40; // entry 10's payload
    bytes[40 * frame_len + 9] ^= 0x01; // entry 40's sequence number
    bytes[70 * frame_len + 5] ^= 0x04; // entry 70's length
    std::fs::write(&seg, &bytes).unwrap();
    let (spool, mut reader, recovery) = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    assert_eq!((recovery.lost_entries, recovery.damaged_bytes), (3, 3 * frame_len as u64));
    let got = texts(&read_all(&mut reader));
    let hit = ["entry 00010", "entry 00040", "entry 00070"];
    let expected: Vec<String> = texts_of(0..100).into_iter().filter(|t| !hit.contains(&t.as_str())).collect();
    assert_eq!(got, expected);
    assert_eq!(spool.stats().damaged_total, 3);
}

#[tokio::test]
async fn a_full_spool_makes_appends_wait_for_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig { max_bytes: 8192, segment_bytes: 2048, ..SpoolConfig::default() };
    let (spool, mut reader, _) = Spool::open(dir.path(), cfg).unwrap();
    spool.append(entries(0..150)).await.unwrap(); // 150 * 39 bytes: about 5.8 KiB
    let blocked = tokio::spawn({
        let spool = spool.clone();
        async move { spool.append(entries(150..250)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!blocked.is_finished(), "the append waits while the spool is full");
    assert!(spool.stats().full);
    let first = read_all(&mut reader);
    assert_eq!(first.len(), 150);
    reader.ack(149).unwrap();
    assert_eq!(blocked.await.unwrap().unwrap(), 249);
    assert_eq!(texts(&read_all(&mut reader)), texts_of(150..250));
    assert!(!spool.stats().full);
    assert_eq!(spool.stats().dropped_total, 0);
}

#[tokio::test]
async fn drop_oldest_deletes_and_counts_unread_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, _) = Spool::open(dir.path(), cfg_drop()).unwrap();
    for i in 0..10 {
        spool.append(entries(i * 100..(i + 1) * 100)).await.unwrap();
    }
    let stats = spool.stats();
    assert!(stats.bytes <= 8192, "{stats:?}");
    assert!(stats.dropped_total > 0);
    let got = read_all(&mut reader);
    assert_eq!(got.len() as u64 + stats.dropped_total, 1000, "every entry is read or counted as dropped");
    let kept: u64 = got.iter().map(|e| weight(&e.data)).sum();
    let all: u64 = entries(0..1000).iter().map(|e| weight(e)).sum();
    assert_eq!(stats.dropped_weight_total, all - kept, "the dropped entries are weighed");
    assert_eq!(got.last().unwrap().seq, 999);
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "what is kept is the newest, without gaps");
    assert_eq!(spool.stats().damaged_total, 0, "dropped is not damaged");
    drop((spool, reader));
    // After a restart (nothing was acknowledged) the kept entries come back; the dropped ones
    // stay dropped, and nothing reads as damaged.
    let (spool, mut reader, recovery) = Spool::open(dir.path(), cfg_drop()).unwrap();
    assert_eq!(recovery.entries, got.len() as u64);
    assert_eq!(read_all(&mut reader), got);
    assert_eq!(spool.stats().damaged_total, 0);
}

#[tokio::test]
async fn entries_the_reader_holds_are_not_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, _) = Spool::open(dir.path(), cfg_drop()).unwrap();
    spool.append(entries(0..100)).await.unwrap();
    // Read, not yet acknowledged (a sink writing them while the spool fills behind it).
    let mut got = reader.read(60, 1 << 20).unwrap();
    assert_eq!(got.len(), 60);
    for i in 1..10 {
        spool.append(entries(i * 100..(i + 1) * 100)).await.unwrap();
    }
    let stats = spool.stats();
    assert!(stats.dropped_total > 0);
    got.extend(read_all(&mut reader));
    assert_eq!(got.len() as u64 + stats.dropped_total, 1000, "held entries are not also counted dropped");
    let kept: u64 = got.iter().map(|e| weight(&e.data)).sum();
    let all: u64 = entries(0..1000).iter().map(|e| weight(e)).sum();
    assert_eq!(stats.dropped_weight_total, all - kept);
}

/// What a test entry weighs: 1 to 7, from its number.
fn weight(entry: &[u8]) -> u64 {
    let n: u64 = std::str::from_utf8(&entry[6..]).unwrap().parse().unwrap();
    n % 7 + 1
}

fn cfg_drop() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 8192,
        segment_bytes: 2048,
        full: FullPolicy::DropOldest,
        weigh: Some(weight),
        ..SpoolConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_land_each_in_its_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, _) = Spool::open(dir.path(), config()).unwrap();
    let tasks: Vec<_> = (0..16u32)
        .map(|t| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for i in 0..200u32 {
                    spool.append(vec![format!("{t}:{i}").into_bytes()]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = texts(&read_all(&mut reader));
    assert_eq!(got.len(), 3200);
    for t in 0..16u32 {
        let mine: Vec<u32> = got
            .iter()
            .filter_map(|s| {
                s.split_once(':').filter(|(a, _)| a.parse::<u32>() == Ok(t)).map(|(_, i)| i.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..200).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn the_reader_sees_the_end_once_every_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, _) = Spool::open(dir.path(), config()).unwrap();
    spool.append(entries(0..10)).await.unwrap();
    drop(spool);
    assert!(reader.wait().await);
    assert_eq!(read_all(&mut reader).len(), 10);
    assert!(!reader.wait().await);
}

/// A tmpfs of 256 KiB, unmounted on drop. Needs root (CI runs as root).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a small tmpfs needs root (the test suite runs as root)");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_makes_appends_wait_and_loses_nothing() {
    let disk = SmallDisk::mount();
    let filler = disk.0.path().join("filler");
    let spool_dir = disk.0.path().join("spool");
    let (spool, mut reader, _) = Spool::open(&spool_dir, SpoolConfig::default()).unwrap();
    std::fs::write(&filler, vec![0u8; 200 << 10]).unwrap();
    // About 80 KiB of entries: more than the disk has left.
    let big: Vec<Vec<u8>> = (0..80u32).map(|i| format!("{i:05}").repeat(200).into_bytes()).collect();
    let append = tokio::spawn({
        let spool = spool.clone();
        let big = big.clone();
        async move { spool.append(big).await }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!append.is_finished(), "the append waits while the disk is full");
    assert!(spool.stats().write_errors_total > 0);
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(append.await.unwrap().unwrap(), 79);
    let got = read_all(&mut reader);
    assert_eq!(got.into_iter().map(|e| e.data).collect::<Vec<_>>(), big);
}
