//! A stop whose deadline passes while a write hangs on a database that stopped answering (the
//! connection is open, nothing comes back): the write is cut at the deadline, its records stay in
//! the sink's spool, and the next start writes them once the database answers again.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{publish_all, Roost};
use roost_testkit::{env_url, unique};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy that forwards until it is stalled, then keeps every connection open and passes
/// nothing on: a database host that froze.
struct StallingProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(target: SocketAddr) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let s = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(forward(cr, sw, s.clone()));
                tokio::spawn(forward(sr, cw, s.clone()));
            }
        });
        StallingProxy { addr, stalled }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_hung_at_the_stop_deadline_is_cut_and_its_records_written_at_the_next_start() {
    let pg = env_url("ROOST_TEST_POSTGRES_URL");
    let target: SocketAddr = pg.split('@').nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let proxy = StallingProxy::start(target).await;
    let via_proxy = pg.replace(&target.to_string(), &proxy.addr.to_string());
    let prefix = format!("{}_", unique("hung"));
    let config = format!(
        r#"
shutdown_timeout_secs = 3

[[sinks]]
name = "pg"
kind = "postgres"
url = "{via_proxy}"
table_prefix = "{prefix}"
linger_ms = 50
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(dir.path(), Some(&config));
    let batch = |from: i64, n: i64| -> Vec<(String, Vec<u8>)> {
        (from..from + n)
            .map(|i| ("devices/d/env".to_string(), json!({"i": i}).to_string().into_bytes()))
            .collect()
    };
    publish_all(roost.mqtt, "before", batch(0, 100)).await;
    roost.wait_status("first rows written", |s| s["sinks"][0]["records_written"] == 100).await;

    // The database host freezes: the next write is sent and never answered.
    proxy.stall();
    publish_all(roost.mqtt, "during", batch(100, 40)).await;
    roost.wait_status("records handed to the sink", |s| s["sinks"][0]["backlog"] == 40).await;
    let (status, log) = roost.stop_with_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("(40 records of this run) are not written yet"), "{log}");

    let letters = rusqlite::Connection::open(dir.path().join("deadletter.db")).unwrap();
    let kept: i64 = letters.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 0, "nothing is given up on\n{log}");

    // Started again with the database reachable, Roost writes what its spool kept, once.
    let direct = config.replace(&via_proxy, &pg);
    let roost = Roost::start(dir.path(), Some(&direct));
    let status = roost.wait_status("the spool drained", |s| s["sinks"][0]["spool"]["entries"] == 0).await;
    assert_eq!(status["sinks"][0]["records_written"], 40, "{status}");
    let (client, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(&format!("SELECT count(*), count(DISTINCT i) FROM \"{prefix}env\""), &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (140, 140));
    assert_eq!(roost.stop().code(), Some(0));
}
