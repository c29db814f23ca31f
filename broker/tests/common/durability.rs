//! What the durability fault tests share: a PostgreSQL schema of their own, reading back which
//! seqs a sink stored and how often, waiting until every sink has written its backlog, and the
//! check that every acknowledged seq is stored and none more often than it was sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use roost_testkit::publisher::Outcome;
use roost_testkit::unique;
use serde_json::Value;

/// Creates a schema of its own on the PostgreSQL server of `url` and returns its name.
pub async fn pg_schema(url: &str, prefix: &str) -> String {
    let schema = unique(prefix);
    let client = pg_connect(url).await;
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    schema
}

/// A config with two sinks that the default pipeline (`devices/#`) feeds: `pg`, PostgreSQL at
/// `url` in `schema`, and `sqlite`, SQLite in the data directory; both write every 50 ms.
pub fn two_sinks(url: &str, schema: &str) -> String {
    format!(
        r#"
[[sinks]]
name = "pg"
kind = "postgres"
url = "{url}"
schema = "{schema}"
linger_ms = 50

[[sinks]]
name = "sqlite"
kind = "sqlite"
linger_ms = 50
"#
    )
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// How many times each seq is stored in a table.
#[derive(Debug, Default)]
pub struct Stored(pub HashMap<u64, u32>);

impl Stored {
    pub fn rows(&self) -> u64 {
        self.0.values().map(|n| u64::from(*n)).sum()
    }

    /// Seqs stored more than once.
    pub fn duplicates(&self) -> u64 {
        self.0.values().filter(|n| **n > 1).count() as u64
    }

    fn from_rows(rows: impl IntoIterator<Item = (i64, i64)>) -> Stored {
        Stored(rows.into_iter().map(|(seq, n)| (seq as u64, n as u32)).collect())
    }
}

/// The seqs in `schema.table` of PostgreSQL; none when the table or its `seq` column does not
/// exist yet (the sink creates the table, then adds a column per field).
pub async fn pg_stored(url: &str, schema: &str, table: &str) -> Stored {
    use tokio_postgres::error::SqlState;
    let client = pg_connect(url).await;
    let sql = format!("SELECT seq, count(*) FROM {schema}.{table} GROUP BY seq");
    match client.query(&sql, &[]).await {
        Ok(rows) => Stored::from_rows(rows.iter().map(|r| (r.get(0), r.get(1)))),
        Err(e)
            if [Some(&SqlState::UNDEFINED_TABLE), Some(&SqlState::UNDEFINED_COLUMN)].contains(&e.code()) =>
        {
            Stored::default()
        }
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The seqs in `table` of the SQLite database at `path`; none when it does not exist yet.
pub fn sqlite_stored(path: &std::path::Path, table: &str) -> Stored {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let sql = format!("SELECT seq, count(*) FROM \"{table}\" GROUP BY seq");
    let Ok(mut stmt) = conn.prepare(&sql) else { return Stored::default() };
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    Stored::from_rows(rows.map(Result::unwrap))
}

/// Compares what a sink stored with what the publisher sent and saw acknowledged, prints the
/// figures under `label`, and returns the complaints (empty when all is well): an acknowledged
/// seq missing, a seq stored more often than it was sent (a duplicate Roost made), a seq stored
/// that was never sent.
pub fn check(label: &str, outcome: &Outcome, stored: &Stored) -> Vec<String> {
    let acked = outcome.acked_count();
    let missing: Vec<u64> = (0..outcome.acked.len() as u64)
        .filter(|s| outcome.acked[*s as usize] && !stored.0.contains_key(s))
        .collect();
    let mut made_twice = Vec::new();
    let mut unknown = Vec::new();
    for (seq, n) in &stored.0 {
        match outcome.sends.get(*seq as usize) {
            Some(sent) if *n > *sent => made_twice.push(*seq),
            Some(_) => {}
            None => unknown.push(*seq),
        }
    }
    eprintln!(
        "{label}: {acked} acknowledged, {} rows stored ({} distinct seqs), {} acknowledged missing, \
         {} seqs stored twice or more ({} of them more often than the publisher sent them; {} seqs were re-sent)",
        stored.rows(),
        stored.0.len(),
        missing.len(),
        stored.duplicates(),
        made_twice.len(),
        outcome.resent_count(),
    );
    let mut complaints = Vec::new();
    if !missing.is_empty() {
        let first: Vec<_> = missing.iter().take(10).collect();
        complaints.push(format!("{label}: {} acknowledged seqs missing (first: {first:?})", missing.len()));
    }
    if !made_twice.is_empty() {
        made_twice.sort_unstable();
        let first: Vec<_> = made_twice.iter().take(10).collect();
        complaints.push(format!(
            "{label}: {} seqs stored more often than they were sent (first: {first:?})",
            made_twice.len()
        ));
    }
    if !unknown.is_empty() {
        complaints.push(format!("{label}: {} seqs stored that were never sent", unknown.len()));
    }
    complaints
}

/// `GET /api/v1/sinks`, or `None` when this roost has no such endpoint.
pub async fn sinks(roost: &roost_testkit::Roost) -> Option<Value> {
    let resp =
        reqwest::Client::new().get(roost.url("/api/v1/sinks")).bearer_auth(&roost.token).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let doc: Value = resp.json().await.ok()?;
    Some(match doc.get("sinks") {
        Some(list) => list.clone(),
        None => doc,
    })
}

/// Whether every sink has written what it was given. With a spool (`GET /api/v1/sinks`), that
/// is every spool empty: an entry leaves only once its records are written, dead-lettered, or
/// found already written. Without one (an older server), the status's in-memory `backlog`.
async fn drained(roost: &roost_testkit::Roost) -> (bool, Value) {
    let status = roost.status().await;
    let sinks = sinks(roost).await;
    let empty = match sinks.as_ref().and_then(Value::as_array) {
        Some(list) => list.iter().all(|s| s.pointer("/spool/entries").and_then(Value::as_u64) == Some(0)),
        None => status["sinks"].as_array().unwrap().iter().all(|s| s["backlog"] == 0),
    };
    (empty, serde_json::json!({"status": status["sinks"], "sinks": sinks}))
}

/// Waits until every sink has written its backlog, seen twice a second apart (a restarted server
/// may take a moment to read its spool); panics after `patience` without that, with the figures.
pub async fn wait_drained(roost: &roost_testkit::Roost, patience: Duration) {
    let until = Instant::now() + patience;
    let mut seen = 0;
    loop {
        let (empty, doc) = drained(roost).await;
        seen = if empty { seen + 1 } else { 0 };
        if seen == 2 {
            // The status's backlog counts records handed to a sink and not yet counted written;
            // say so when it disagrees with the empty spools (a replayed batch skipped as
            // already written, say), the test's counts decide.
            let stuck: Vec<_> =
                doc["status"].as_array().into_iter().flatten().filter(|s| s["backlog"] != 0).collect();
            if !stuck.is_empty() {
                eprintln!("note: spools empty but the status shows a backlog: {stuck:?}");
            }
            return;
        }
        if Instant::now() > until {
            let log = roost.log_text();
            let warnings: Vec<_> =
                log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
            let last = &warnings[warnings.len().saturating_sub(30)..];
            panic!("sinks not drained after {patience:?}: {doc:#}\nlast warnings:\n{}", last.join("\n"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
