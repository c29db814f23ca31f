//! `make bench`: what the spool costs, and how fast a sink drains it after an outage.
//!
//! Starts `roost serve` (release build) with one PostgreSQL sink and publishes QoS 1 from many
//! concurrent connections, each with a window of messages in flight (a connection's PUBACKs go
//! out in order, each once its message is spooled, while the broker reads the next ones), 100-byte
//! JSON payloads. It prints:
//! - end to end into PostgreSQL with `spool.fsync = "always"` (group commit, the default) and with
//!   `"never"`: messages/s from the first publish until every row is committed, and what fsync
//!   costs in percent;
//! - the drain after an outage: PostgreSQL behind a proxy switched off, messages published into
//!   the spool meanwhile, then the proxy switched on: the wait until the sink writes again (its
//!   retry backoff) and the records/s it drains at.
//!
//! Environment: `ROOST_BENCH_MESSAGES` (per throughput run, default 200000),
//! `ROOST_BENCH_CONNECTIONS` and `ROOST_BENCH_WINDOW` (in flight per connection) for one shape
//! (default: 128 x 32, then 512 x 8), `ROOST_BENCH_OUTAGE_SECS` (default 60),
//! `ROOST_BENCH_BACKLOG` (messages published during the outage, default 200000). Needs
//! `ROOST_TEST_POSTGRES_URL` (`make bench` sets it).

mod common;

use std::time::{Duration, Instant};

use common::start;
use roost_testkit::proxy::Proxy;
use roost_testkit::publisher::{Load, Outcome, Publisher};
use roost_testkit::{unique, Roost};
use tokio::sync::watch;

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a run publishes.
#[derive(Clone, Copy)]
struct Shape {
    messages: u64,
    connections: usize,
    window: u16,
}

impl Shape {
    fn load(&self, name: &str) -> Load {
        let mut load = Load::new(name, "env", self.messages, self.connections);
        load.window = self.window;
        load
    }
}

/// A fresh schema on the PostgreSQL server, and the config of a roost writing there through
/// `url` with `fsync`.
async fn schema(pg: &tokio_postgres::Client) -> String {
    let schema = unique("bench_spool");
    pg.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    schema
}

fn config(url: &str, schema: &str, fsync: &str) -> String {
    format!(
        "[spool]\nfsync = \"{fsync}\"\n\n[[sinks]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n"
    )
}

/// Publishes the whole load and waits until PostgreSQL has it; returns messages/s end to end.
async fn throughput(url: &str, pg: &tokio_postgres::Client, fsync: &str, shape: Shape) -> f64 {
    let schema = schema(pg).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(&config(url, &schema, fsync)));
    let started = Instant::now();
    let outcome = publish(&server, shape.load(&format!("bench-{fsync}"))).await;
    written(&server, shape.messages).await;
    let committed = started.elapsed();
    let rate = shape.messages as f64 / committed.as_secs_f64();
    println!(
        "end to end into postgres, fsync = {fsync:<7} {rate:>9.0} msg/s  ({} rows committed in {:.2}s; publishers acked in {:.2}s)",
        shape.messages,
        committed.as_secs_f64(),
        outcome.elapsed.as_secs_f64()
    );
    rows(pg, &schema, shape.messages).await;
    rate
}

async fn publish(server: &Roost, load: Load) -> Outcome {
    let (_addr, rx) = watch::channel(server.mqtt);
    Publisher::start(load, rx).finish(Duration::from_secs(600)).await
}

/// Waits until the server's sink has written `n` records.
async fn written(server: &Roost, n: u64) {
    loop {
        let status = server.status().await;
        if status["sinks"][0]["records_written"].as_u64() >= Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that the bench's table holds `n` rows.
async fn rows(pg: &tokio_postgres::Client, schema: &str, n: u64) {
    let rows: i64 = pg.query_one(&format!("SELECT count(*) FROM {schema}.env"), &[]).await.unwrap().get(0);
    assert_eq!(rows as u64, n, "rows in PostgreSQL");
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

/// PostgreSQL away for `outage` while `shape` is published into the spool, then back: prints
/// how long the sink took to write again and how fast it drained the backlog.
async fn drain_after_outage(url: &str, pg: &tokio_postgres::Client, shape: Shape, outage: Duration) {
    let schema = schema(pg).await;
    let (mut proxy, via) = Proxy::postgres(url).await;
    proxy.off().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(&config(&via, &schema, "always")));
    let down = Instant::now();
    let outcome = publish(&server, shape.load("bench-outage")).await;
    let spooled = outcome.elapsed;
    tokio::time::sleep_until((down + outage).into()).await;
    proxy.on().await;
    let back = Instant::now();
    let first_written = loop {
        let status = server.status().await;
        let n = status["sinks"][0]["records_written"].as_u64().unwrap_or(0);
        if n > 0 {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let first = back.elapsed();
    written(&server, shape.messages).await;
    let all = back.elapsed();
    // The rate from the first write on; when that write held the whole backlog, since it came back.
    let (drained, span) = if shape.messages > first_written {
        (shape.messages - first_written, all - first)
    } else {
        (shape.messages, all)
    };
    println!(
        "drain after a {}s outage: {} messages spooled in {:.2}s; first write {:.2}s after the database came back \
         (its retry backoff), all written after {:.2}s: {:.0} records/s",
        outage.as_secs(),
        shape.messages,
        spooled.as_secs_f64(),
        first.as_secs_f64(),
        all.as_secs_f64(),
        drained as f64 / span.as_secs_f64(),
    );
    rows(pg, &schema, shape.messages).await;
}

fn main() {
    let Ok(url) = std::env::var("ROOST_TEST_POSTGRES_URL") else {
        println!("durability benchmark: skipped, ROOST_TEST_POSTGRES_URL not set (run `make bench`)");
        return;
    };
    let messages = env_or("ROOST_BENCH_MESSAGES", 200_000);
    // Two fleet shapes by default: rmqtt answers a connection's publishes one at a time, so the
    // fsync latency weighs more the fewer connections share each group commit.
    let shapes: Vec<Shape> = match std::env::var("ROOST_BENCH_CONNECTIONS") {
        Ok(_) => vec![Shape {
            messages,
            connections: env_or("ROOST_BENCH_CONNECTIONS", 128) as usize,
            window: env_or("ROOST_BENCH_WINDOW", 32) as u16,
        }],
        Err(_) => vec![
            Shape { messages, connections: 128, window: 32 },
            Shape { messages, connections: 512, window: 8 },
        ],
    };
    let outage = Duration::from_secs(env_or("ROOST_BENCH_OUTAGE_SECS", 60));
    let backlog = Shape { messages: env_or("ROOST_BENCH_BACKLOG", 200_000), ..shapes[0] };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        for shape in shapes {
            println!(
                "roost durability benchmark: QoS 1 into postgres, {} connections x {} in flight, 100-byte JSON, {} messages per run",
                shape.connections, shape.window, shape.messages
            );
            let always = throughput(&url, &pg, "always", shape).await;
            let never = throughput(&url, &pg, "never", shape).await;
            println!(
                "fsync = \"always\" costs {:.1}% of the throughput with \"never\"",
                (1.0 - always / never) * 100.0
            );
        }
        drain_after_outage(&url, &pg, backlog, outage).await;
    });
}
