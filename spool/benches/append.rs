//! Appends per second into a spool, by fsync policy and number of concurrent appenders (each
//! awaits its append before the next, as a publisher awaits its PUBACK), and the read rate.
//!
//! `cargo bench -p roost-spool --bench append` (set ROOST_SPOOL_BENCH_DIR to measure another disk).

use std::time::{Duration, Instant};

use roost_spool::{FsyncPolicy, Spool, SpoolConfig};

const ENTRY: usize = 160;

fn main() {
    let base = std::env::var_os("ROOST_SPOOL_BENCH_DIR").map(std::path::PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "{:<12} {:>10} {:>14} {:>16} {:>12}",
        "fsync", "appenders", "appends/s", "entries/commit", "read/s"
    );
    for (name, fsync) in [
        ("always", FsyncPolicy::Always),
        ("interval", FsyncPolicy::Interval(Duration::from_millis(100))),
        ("never", FsyncPolicy::Never),
    ] {
        for appenders in [1usize, 8, 64, 256] {
            let dir = match &base {
                Some(b) => tempfile::tempdir_in(b).unwrap(),
                None => tempfile::tempdir().unwrap(),
            };
            let cfg = SpoolConfig { fsync, ..SpoolConfig::default() };
            let (spool, mut reader, _) = Spool::open(dir.path(), cfg).unwrap();
            let per = (if appenders == 1 { 5_000 } else { 200_000 } / appenders).max(100);
            let started = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = (0..appenders)
                    .map(|_| {
                        let spool = spool.clone();
                        tokio::spawn(async move {
                            for _ in 0..per {
                                spool.append(vec![vec![b'x'; ENTRY]]).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            let secs = started.elapsed().as_secs_f64();
            let stats = spool.stats();
            let read_started = Instant::now();
            let mut read = 0;
            loop {
                let got = reader.read(10_000, 8 << 20).unwrap();
                if got.is_empty() {
                    break;
                }
                read += got.len();
                reader.ack(got.last().unwrap().seq).unwrap();
            }
            let read_rate = read as f64 / read_started.elapsed().as_secs_f64();
            println!(
                "{:<12} {:>10} {:>14.0} {:>16.1} {:>12.0}",
                name,
                appenders,
                stats.appended_total as f64 / secs,
                stats.appended_total as f64 / stats.commits_total as f64,
                read_rate
            );
        }
    }
}
