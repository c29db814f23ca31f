//! `roost` SIGKILLed mid-stream, three times at random moments, and restarted on the same data
//! directory while publishers keep going: every message whose PUBACK the publisher received is
//! stored in PostgreSQL and in SQLite, and none more often than the publisher sent it.
//!
//! A publisher re-sends what it had not seen acknowledged when the connection broke (MQTT's
//! at-least-once), so a message the killed server had already spooled may arrive twice; those
//! re-sends are counted and printed. A seq stored more often than it was sent would be a
//! duplicate Roost made (a spool replayed twice) and fails the test. The server runs with the
//! default `spool.fsync = "always"`.

mod common;

use std::time::Duration;

use common::durability::{check, pg_schema, pg_stored, sqlite_stored, two_sinks, wait_drained};
use common::Roost;
use rand::Rng;
use roost_testkit::publisher::{Load, Publisher};
use roost_testkit::{env_url, signal};
use tokio::sync::watch;

const MESSAGES: u64 = 20_000;
const CONNECTIONS: usize = 8;
const KILLS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_sigkill_and_none_is_stored_twice() {
    let pg = env_url("ROOST_TEST_POSTGRES_URL");
    let schema = pg_schema(&pg, "kill").await;
    let config = two_sinks(&pg, &schema);
    let dir = tempfile::tempdir().unwrap();
    let mut roost = Roost::start(dir.path(), Some(&config));
    let (addr, addr_rx) = watch::channel(roost.mqtt);
    let publisher = Publisher::start(Load::new("kill", "env", MESSAGES, CONNECTIONS), addr_rx);

    // Kill k happens once a random number of messages in the k-th slice of the run is
    // acknowledged, after a further random delay.
    let mut rng = rand::rng();
    let slice = MESSAGES / (KILLS + 1);
    for k in 0..KILLS {
        let at = rng.random_range(k * slice + slice / 5..(k + 1) * slice);
        while publisher.progress().acked.load(std::sync::atomic::Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..50))).await;
        signal(roost.child.id(), nix::sys::signal::Signal::SIGKILL);
        roost.wait(Duration::from_secs(10));
        let acked = publisher.progress().acked.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("kill {}: SIGKILL after {acked} acknowledged", k + 1);
        roost = Roost::start(dir.path(), Some(&config));
        addr.send(roost.mqtt).unwrap();
    }
    let outcome = publisher.finish(Duration::from_secs(240)).await;
    wait_drained(&roost, Duration::from_secs(120)).await;

    let label = format!("{KILLS} kills, {} sessions", outcome.sessions);
    let mut complaints =
        check(&format!("postgres ({label})"), &outcome, &pg_stored(&pg, &schema, "env").await);
    complaints.extend(check(
        &format!("sqlite ({label})"),
        &outcome,
        &sqlite_stored(&dir.path().join("roost.db"), "env"),
    ));
    let (_, log) = roost.stop_with_log();
    assert!(complaints.is_empty(), "{}\nlast server's log:\n{log}", complaints.join("\n"));
}
