//! The cases every sink must pass. Each takes a fresh backend namespace.

use std::sync::Arc;
use std::time::Duration;

use roost_connectors::{Position, Sink, WriteOutcome};
use roost_core::{FieldValue, Record};
use roost_testkit::unique;

use crate::backends::{Backend, Conflicts, Row, Val};
use crate::proxy::Proxy;

/// 2026-01-01T00:00:00.123456789Z
const T0: i64 = 1_767_225_600_123_456_789;

fn rec(measurement: &str, device: &str, time: i64, fields: &[(&str, FieldValue)]) -> Record {
    let mut r = Record::new(measurement, device, time);
    r.fields.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    r
}

async fn write(sink: &mut Box<dyn Sink>, batch: Vec<Record>) -> WriteOutcome {
    sink.write(Arc::new(batch)).await.unwrap_or_else(|e| panic!("write failed: {e}"))
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| (a.time, &a.device).cmp(&(b.time, &b.device)));
    rows
}

fn expected(b: &impl Backend, records: &[Record]) -> Vec<Row> {
    sorted(records.iter().map(|r| b.expected_row(r)).collect())
}

/// The time between consecutive records of one device: 1 µs, or the database's precision
/// where that is coarser (VictoriaMetrics and MongoDB keep milliseconds).
fn step(b: &impl Backend) -> i64 {
    b.time_precision_ns().max(1000)
}

/// Without string storage, the records lose their string fields (and one record with a string
/// is checked to be rejected instead).
fn without_strings(b: &impl Backend, records: &mut [Record]) {
    if !b.stores_strings() {
        for r in records {
            r.fields.retain(|_, v| !matches!(v, FieldValue::Str(_)));
        }
    }
}

pub async fn every_type_round_trips(b: &impl Backend) {
    let mut s = b.open().await;
    let mut r1 = rec(
        "env",
        "d1",
        T0,
        &[
            ("f", FieldValue::Float(21.5)),
            ("tiny", FieldValue::Float(-0.000123)),
            ("huge", FieldValue::Float(1.5e300)),
            ("i", FieldValue::Int(i64::MAX)),
            ("j", FieldValue::Int(i64::MIN)),
            ("ok", FieldValue::Bool(true)),
            ("s", FieldValue::Str("héllo \"double\" 'single' \\ back\nnew line ✓ 🐦".into())),
        ],
    );
    r1.tags.insert("site".into(), "lab 'one'".into());
    let mut r2 = rec(
        "env",
        "d-2.x",
        T0 + 1_000,
        &[
            ("f", FieldValue::Float(-3.25)),
            ("i", FieldValue::Int(0)),
            ("ok", FieldValue::Bool(false)),
            ("s", FieldValue::Str(String::new())),
        ],
    );
    r2.tags.insert("site".into(), "field".into());
    let r3 = rec("env", "d1", 1, &[("f", FieldValue::Float(0.0))]);
    let mut batch = vec![r1, r2, r3];
    if !b.stores_strings() {
        let out = write(&mut s, vec![batch[0].clone()]).await;
        assert_eq!(out.written, 0, "{out:?}");
        assert!(out.rejected[0].reason.contains("string"), "{out:?}");
        without_strings(b, &mut batch);
    }
    let out = write(&mut s, batch.clone()).await;
    assert_eq!((out.written, out.rejected), (3, vec![]));
    drop(s);
    assert_eq!(sorted(b.rows("env").await), expected(b, &batch));
}

pub async fn a_field_that_appears_later_adds_a_column(b: &impl Backend) {
    let mut s = b.open().await;
    let first = vec![rec("m", "d", T0, &[("a", FieldValue::Int(1))])];
    let new = if b.stores_strings() { FieldValue::Str("new".into()) } else { FieldValue::Float(0.5) };
    let mut second = rec("m", "d", T0 + step(b), &[("a", FieldValue::Int(2)), ("b", new)]);
    second.tags.insert("zone".into(), "z1".into());
    assert_eq!(write(&mut s, first.clone()).await.written, 1);
    assert_eq!(write(&mut s, vec![second.clone()]).await.written, 1);
    drop(s);
    assert_eq!(sorted(b.rows("m").await), expected(b, &[first[0].clone(), second]));
}

pub async fn type_conflicts_follow_the_schema_policy(b: &impl Backend) {
    let mut s = b.open().await;
    let x = |t: i64, v: FieldValue| rec("m", "d", T0 + t * step(b), &[("x", v)]);
    write(&mut s, vec![x(0, FieldValue::Int(1))]).await;
    let second = vec![
        x(1, FieldValue::Float(2.5)),
        x(2, FieldValue::Str("oops".into())),
        x(3, FieldValue::Int(3)),
        x(4, FieldValue::Bool(true)),
    ];
    let out = write(&mut s, second).await;
    drop(s);
    let got: Vec<Val> = sorted(b.rows("m").await).into_iter().map(|r| r.values["x"].clone()).collect();
    let refused: Vec<usize> = out.rejected.iter().map(|r| r.index).collect();
    match b.conflicts() {
        Conflicts::Widen => {
            // bigint widened to double for 2.5; the string and the boolean are refused alone.
            assert_eq!(out.written, 2, "{out:?}");
            assert_eq!(refused, [1, 3], "{out:?}");
            assert!(out.rejected[0].reason.contains("string"), "{out:?}");
            assert_eq!(got, [Val::Float(1.0), Val::Float(2.5), Val::Float(3.0)]);
        }
        Conflicts::KeepEach => {
            // SQLite and MongoDB keep each value with its own type.
            assert_eq!((out.written, out.rejected.len()), (4, 0));
            let t = b.expect(&FieldValue::Bool(true));
            assert_eq!(got, [Val::Int(1), Val::Float(2.5), Val::Str("oops".into()), Val::Int(3), t]);
        }
        Conflicts::FirstTypeWins => {
            // The field is an integer: the server refuses the float, the string and the boolean.
            assert_eq!(out.written, 1, "{out:?}");
            assert_eq!(refused, [0, 1, 3], "{out:?}");
            assert!(out.rejected.iter().all(|r| r.reason.contains("field type conflict")), "{out:?}");
            assert!(out.rejected[1].reason.contains("string"), "{out:?}");
            assert_eq!(got, [Val::Int(1), Val::Int(3)]);
        }
        Conflicts::NumbersOnly => {
            // Every number is a float, the boolean is 1; the string is refused by the sink.
            assert_eq!(out.written, 3, "{out:?}");
            assert_eq!(refused, [1], "{out:?}");
            assert!(out.rejected[0].reason.contains("string"), "{out:?}");
            assert_eq!(got, [Val::Float(1.0), Val::Float(2.5), Val::Float(3.0), Val::Float(1.0)]);
        }
    }
}

pub async fn hostile_identifiers_reject_only_their_record(b: &impl Backend) {
    let mut s = b.open().await;
    let one = FieldValue::Int(1);
    let t = |k: i64| T0 + k * step(b);
    let batch = vec![
        rec("env", "d", t(0), &[("t", FieldValue::Int(1))]),
        rec("env", "d", t(1), &[("\"; DROP TABLE x; --", one.clone())]),
        rec("x\"; DROP TABLE env; --", "d", t(2), &[("t", one.clone())]),
        rec("env", "d", t(3), &[("température", one.clone())]),
        rec("env", "d", t(4), &[(&"n".repeat(200), one.clone())]),
        rec("env", "d", t(5), &[("", one.clone())]),
        rec("env", "d", t(6), &[("Temp", one.clone()), ("temp", one.clone())]),
        rec("", "d", t(7), &[("t", one.clone())]),
        rec("env", "d", t(8), &[("t", FieldValue::Int(2))]),
    ];
    let out = write(&mut s, batch.clone()).await;
    drop(s);
    assert_eq!(out.written, 2, "{out:?}");
    assert_eq!(out.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(b.tables().await, ["env"]);
    assert_eq!(sorted(b.rows("env").await), expected(b, &[batch[0].clone(), batch[8].clone()]));
}

pub async fn names_that_differ_only_by_case_share_a_column(b: &impl Backend) {
    let mut s = b.open().await;
    let batch = [
        rec("Env", "d", T0, &[("Temp", FieldValue::Int(1))]),
        rec("env", "d", T0 + step(b), &[("temp", FieldValue::Int(2))]),
        rec("ENV", "d", T0 + 2 * step(b), &[("TEMP", FieldValue::Int(3))]),
    ];
    assert_eq!(write(&mut s, batch[..1].to_vec()).await.written, 1);
    assert_eq!(write(&mut s, batch[1..].to_vec()).await.written, 2);
    drop(s);
    if !b.names_fold_case() {
        // Schemaless databases keep names as sent: three measurements of one row each.
        assert_eq!(b.tables().await, ["ENV", "Env", "env"]);
        for (i, m) in ["Env", "env", "ENV"].into_iter().enumerate() {
            assert_eq!(b.rows(m).await, expected(b, &batch[i..=i]), "{m}");
        }
        return;
    }
    assert_eq!(b.tables().await, ["env"]);
    let got: Vec<Val> = sorted(b.rows("Env").await).into_iter().map(|r| r.values["temp"].clone()).collect();
    assert_eq!(got, [Val::Int(1), Val::Int(2), Val::Int(3)]);
}

pub async fn an_empty_batch_writes_nothing(b: &impl Backend) {
    let mut s = b.open().await;
    assert_eq!(write(&mut s, vec![]).await, WriteOutcome::default());
    drop(s);
    assert!(b.tables().await.is_empty());
}

pub async fn a_batch_of_ten_thousand_records(b: &impl Backend) {
    let mut s = b.open().await;
    let batch: Vec<Record> = (0..10_000)
        .map(|i| {
            rec(
                "bulk",
                &format!("dev-{}", i % 7),
                T0 + i * step(b),
                &[
                    ("i", FieldValue::Int(i)),
                    ("f", FieldValue::Float(i as f64 / 3.0)),
                    ("s", FieldValue::Str(format!("row {i}"))),
                ],
            )
        })
        .collect();
    let mut batch = batch;
    without_strings(b, &mut batch);
    let out = write(&mut s, batch.clone()).await;
    assert_eq!((out.written, out.rejected.len()), (10_000, 0));
    drop(s);
    assert_eq!(sorted(b.rows("bulk").await), expected(b, &batch));
}

pub async fn two_sinks_writing_one_table_concurrently(b: &impl Backend) {
    let sinks = [b.open().await, b.open().await];
    let step = step(b);
    let mut tasks = Vec::new();
    for (n, mut sink) in sinks.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for batch in 0..10i64 {
                let records: Vec<Record> = (0..500i64)
                    .map(|i| {
                        let time = T0 + (batch * 500 + i) * step;
                        let mut fields = vec![("v", FieldValue::Int(i))];
                        // New columns appear half way, in both writers at once.
                        if batch >= 5 {
                            fields.push(("late", FieldValue::Float(1.5)));
                            fields.push((if n == 0 { "only_a" } else { "only_b" }, FieldValue::Bool(true)));
                        }
                        rec("shared", &format!("writer-{n}"), time, &fields)
                    })
                    .collect();
                let out = sink.write(Arc::new(records)).await.unwrap_or_else(|e| panic!("writer {n}: {e}"));
                assert_eq!((out.written, out.rejected.len()), (500, 0), "writer {n} batch {batch}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = b.rows("shared").await;
    assert_eq!(rows.len(), 10_000);
    for n in 0..2 {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.device == format!("writer-{n}")).collect();
        assert_eq!(mine.len(), 5000);
        assert_eq!(mine.iter().filter(|r| r.values.contains_key("late")).count(), 2500);
    }
}

pub async fn the_database_going_away_between_batches(b: &impl Backend) {
    let (target, _) = b.via_proxy("127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target).await;
    let (_, options) = b.via_proxy(proxy.addr);
    let mut s = b.open_with(options).await;
    let batch = |from: i64| -> Vec<Record> {
        (from..from + 100)
            .map(|i| rec("restart", "d", T0 + i * step(b), &[("i", FieldValue::Int(i))]))
            .collect()
    };
    assert_eq!(write(&mut s, batch(0)).await.written, 100);

    proxy.cut();
    let err = s.write(Arc::new(batch(100))).await.expect_err("the database is away");
    assert!(err.is_retryable(), "{err}");

    proxy.restore();
    // The sink reconnects; the same batch is retried whole (as the sink actor does).
    let mut attempts = 0;
    let out = loop {
        attempts += 1;
        match s.write(Arc::new(batch(100))).await {
            Ok(out) => break out,
            Err(e) if e.is_retryable() && attempts < 50 => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no recovery after {attempts} attempts: {e}"),
        }
    };
    assert_eq!(out.written, 100);
    drop(s);
    drop(proxy);
    let all: Vec<Record> = batch(0).into_iter().chain(batch(100)).collect();
    assert_eq!(sorted(b.rows("restart").await), expected(b, &all));
}

pub async fn a_table_not_created_by_roost_refuses_only_its_records(b: &impl Backend) {
    b.create_foreign_table("legacy").await;
    let mut s = b.open().await;
    let batch = vec![
        rec("legacy", "d", T0, &[("v", FieldValue::Int(1))]),
        rec("env", "d", T0, &[("t", FieldValue::Int(1))]),
    ];
    let out = write(&mut s, batch.clone()).await;
    drop(s);
    assert_eq!(out.written, 1, "{out:?}");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 0);
    assert!(out.rejected[0].reason.contains("not created by Roost"), "{out:?}");
    assert_eq!(sorted(b.rows("env").await), expected(b, &batch[1..]));
}

/// The index Roost makes for `env` must not take the name of a later measurement's table
/// (SQLite and PostgreSQL keep tables and indexes in one namespace).
pub async fn a_measurement_named_like_another_tables_index_gets_its_own_table(b: &impl Backend) {
    let mut s = b.open().await;
    let first = vec![rec("env", "d", T0, &[("t", FieldValue::Int(1))])];
    assert_eq!(write(&mut s, first.clone()).await.written, 1);
    let second = vec![
        rec("env_device_time", "d", T0, &[("t", FieldValue::Int(2))]),
        rec("env_device_time_idx", "d", T0, &[("t", FieldValue::Int(3))]),
        rec("env", "d", T0 + 1000, &[("t", FieldValue::Int(4))]),
    ];
    let out = write(&mut s, second.clone()).await;
    drop(s);
    assert_eq!((out.written, out.rejected.len()), (3, 0), "{out:?}");
    assert_eq!(b.tables().await, ["env", "env_device_time", "env_device_time_idx"]);
    assert_eq!(sorted(b.rows("env").await), expected(b, &[first[0].clone(), second[2].clone()]));
    assert_eq!(b.rows("env_device_time").await, expected(b, &second[..1]));
}

/// A database made by an older Roost has `env_device_time` as `env`'s index: a measurement of
/// that name cannot get a table there (SQLite, PostgreSQL). Its records are refused with the
/// database's reason, every time, and the sink goes on writing the others.
pub async fn a_name_held_by_an_index_rejects_only_its_records(b: &impl Backend) {
    let mut s = b.open().await;
    let env = |t: i64| rec("env", "d", T0 + t, &[("t", FieldValue::Int(t))]);
    assert_eq!(write(&mut s, vec![env(0)]).await.written, 1);
    drop(s);
    b.create_index("env", "env_device_time").await;
    let clash = |t: i64| rec("env_device_time", "d", T0 + t, &[("t", FieldValue::Int(t))]);
    // MySQL's index names are per table: there is no clash.
    let clashes = b.kind() != "mysql";
    let mut s = b.open().await;
    for t in [1000, 2000] {
        let out = write(&mut s, vec![clash(t), env(t)]).await;
        if clashes {
            assert_eq!(out.written, 1, "{out:?}");
            assert_eq!(out.rejected.len(), 1, "{out:?}");
            assert_eq!(out.rejected[0].index, 0);
            assert!(!out.rejected[0].reason.is_empty());
        } else {
            assert_eq!((out.written, out.rejected.len()), (2, 0), "{out:?}");
        }
    }
    drop(s);
    assert_eq!(sorted(b.rows("env").await), expected(b, &[env(0), env(1000), env(2000)]));
}

/// A measurement of 63 characters (the longest valid name) gets its table and index, where
/// `<table>_device_time` used to pass MySQL's 64-character limit. With a table_prefix the
/// table name itself can pass the database's limit: those records are refused with the reason.
pub async fn a_sixty_three_character_measurement_gets_its_table(b: &impl Backend) {
    let long = format!("a_measurement_name_of_sixty_three_characters_{}", "x".repeat(18));
    assert_eq!(long.len(), 63);
    let mut s = b.open().await;
    let batch = vec![
        rec(&long, "d", T0, &[("t", FieldValue::Int(1))]),
        rec("env", "d", T0, &[("t", FieldValue::Int(2))]),
    ];
    let out = write(&mut s, batch.clone()).await;
    assert_eq!((out.written, out.rejected.len()), (2, 0), "{out:?}");
    let next = rec(&long, "d", T0 + 1000, &[("t", FieldValue::Int(3))]);
    assert_eq!(write(&mut s, vec![next.clone()]).await.written, 1);
    drop(s);
    assert_eq!(sorted(b.rows(&long).await), expected(b, &[batch[0].clone(), next]));

    // SQLite has neither a table_prefix nor a limit on names.
    if b.kind() == "sqlite" {
        return;
    }
    let mut options = b.options();
    options["table_prefix"] = serde_json::json!("pp");
    let mut s = b.open_with(options).await;
    let out = write(&mut s, batch.clone()).await;
    drop(s);
    assert_eq!(out.written, 1, "{out:?}");
    assert_eq!(out.rejected.len(), 1, "{out:?}");
    assert_eq!(out.rejected[0].index, 0);
    assert!(out.rejected[0].reason.contains("longer than"), "{out:?}");
    assert_eq!(b.rows("ppenv").await, expected(b, &batch[1..]));
}

/// Columns past `max_columns` refuse the records that would add them, before any DDL; the
/// other records of the batch and of the next batches are written.
pub async fn columns_past_max_columns_reject_only_their_records(b: &impl Backend) {
    let fields = |prefix: &str, n: usize| -> Vec<(String, FieldValue)> {
        (0..n).map(|i| (format!("{prefix}{i}"), FieldValue::Int(i as i64))).collect()
    };
    let wide = |t: i64, f: Vec<(String, FieldValue)>| {
        let mut r = Record::new("wide", "d", T0 + t);
        r.fields.extend(f);
        r
    };
    let mut options = b.options();
    options["max_columns"] = serde_json::json!(20);
    let mut s = b.open_with(options).await;
    // time, device and f0..f9 make 12 columns; g0..g9 would make 22.
    let first = vec![
        wide(0, fields("f", 10)),
        wide(1000, fields("g", 10)),
        rec("env", "d", T0, &[("t", FieldValue::Int(1))]),
        wide(2000, fields("f", 5)),
    ];
    let out = write(&mut s, first.clone()).await;
    assert_eq!(out.written, 3, "{out:?}");
    assert_eq!(out.rejected.len(), 1, "{out:?}");
    assert_eq!(out.rejected[0].index, 1);
    assert!(out.rejected[0].reason.contains("max_columns"), "{out:?}");
    // h0..h7 make exactly 20; one more is refused.
    let second = vec![
        wide(3000, fields("h", 8)),
        wide(4000, fields("k", 1)),
        rec("env", "d", T0 + 1000, &[("t", FieldValue::Int(2))]),
    ];
    let out = write(&mut s, second.clone()).await;
    drop(s);
    assert_eq!(out.written, 2, "{out:?}");
    assert_eq!(out.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [1], "{out:?}");
    assert!(out.rejected[0].reason.contains("max_columns"), "{out:?}");
    let kept = [first[0].clone(), first[3].clone(), second[0].clone()];
    assert_eq!(sorted(b.rows("wide").await), expected(b, &kept));
    assert_eq!(sorted(b.rows("env").await), expected(b, &[first[2].clone(), second[2].clone()]));
}

/// InfluxDB refuses lines whose field type differs from the stored one, answering 400 "partial
/// write" that names only the first conflict: the sink finds every refused line (re-sending the
/// unaccounted ones in halves when the answer does not name them all), rejects exactly those
/// with the server's reason, and the rest are written once.
pub async fn lines_the_server_refuses_are_rejected_and_the_rest_written(b: &impl Backend) {
    let mut s = b.open().await;
    let t = |k: i64| T0 + k * step(b);
    let first = rec("pw", "d", t(0), &[("x", FieldValue::Int(0)), ("y", FieldValue::Int(0))]);
    assert_eq!(write(&mut s, vec![first.clone()]).await.written, 1);

    // Two fields in conflict: the answer names one, its count covers both.
    let mixed: Vec<Record> = (1..=20)
        .map(|k| {
            let x = if k % 7 == 0 { FieldValue::Str("bad".into()) } else { FieldValue::Int(k) };
            let y = if k % 5 == 0 { FieldValue::Float(0.5) } else { FieldValue::Int(k) };
            rec("pw", "d", t(k), &[("x", x), ("y", y)])
        })
        .collect();
    let out = write(&mut s, mixed.clone()).await;
    let refused: Vec<usize> = out.rejected.iter().map(|r| r.index).collect();
    assert_eq!(refused, [4, 6, 9, 13, 14, 19], "{out:?}");
    assert_eq!(out.written, 14, "{out:?}");
    assert!(out.rejected.iter().all(|r| r.reason.contains("field type conflict")), "{out:?}");

    // One field in conflict: the answer accounts for every refused line at once.
    let one: Vec<Record> = (21..=30)
        .map(|k| {
            let x = if k % 3 == 0 { FieldValue::Bool(true) } else { FieldValue::Int(k) };
            rec("pw", "d", t(k), &[("x", x)])
        })
        .collect();
    let out = write(&mut s, one.clone()).await;
    assert_eq!(out.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 3, 6, 9], "{out:?}");
    assert!(out.rejected.iter().all(|r| r.reason.contains("is type boolean")), "{out:?}");
    assert_eq!(out.written, 6);
    drop(s);

    let kept: Vec<Record> = std::iter::once(first)
        .chain(mixed.into_iter().enumerate().filter(|(i, _)| !refused.contains(i)).map(|(_, r)| r))
        .chain(one.into_iter().filter(|r| !matches!(r.fields["x"], FieldValue::Bool(_))))
        .collect();
    assert_eq!(sorted(b.rows("pw").await), expected(b, &kept));
}

/// A unique index refuses a second document for one (device, time): only those documents are
/// rejected, with the server's reason; writing the same batch again (a retry) stores nothing
/// twice and gives the same outcome.
pub async fn documents_the_server_refuses_are_rejected_and_the_rest_written(b: &impl Backend) {
    b.refuse_duplicate_times("dup").await;
    let mut s = b.open().await;
    let batch: Vec<Record> = (0..10i64)
        .map(|i| {
            // Records 3 and 7 repeat the time of 2 and 6 with another value.
            let k = if i == 3 || i == 7 { i - 1 } else { i };
            rec("dup", "d", T0 + k * step(b), &[("v", FieldValue::Int(i))])
        })
        .collect();
    let out = write(&mut s, batch.clone()).await;
    assert_eq!(out.written, 8, "{out:?}");
    assert_eq!(out.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [3, 7], "{out:?}");
    assert!(out.rejected.iter().all(|r| r.reason.contains("duplicate key")), "{out:?}");
    let again = write(&mut s, batch.clone()).await;
    assert_eq!(again, out);
    drop(s);
    let kept: Vec<Record> =
        batch.into_iter().enumerate().filter(|(i, _)| *i != 3 && *i != 7).map(|(_, r)| r).collect();
    assert_eq!(sorted(b.rows("dup").await), expected(b, &kept));
}

// ---------------------------------------------------------------------------------------------
// Replays: a batch written again from the sink's spool after a crash is not stored twice.

/// The position of `n` records whose ids start at `first`.
fn position(stream: &str, seq: u64, first: u64, n: usize) -> Position {
    Position { stream: stream.to_owned(), seq, ids: Arc::new((first..first + n as u64).collect()) }
}

/// `n` records of measurement `m`, one per time step from step `from`, field `i` = their step.
fn steps(b: &impl Backend, m: &str, from: i64, n: i64) -> Vec<Record> {
    (from..from + n).map(|i| rec(m, "d", T0 + i * step(b), &[("i", FieldValue::Int(i))])).collect()
}

async fn write_at(sink: &mut Box<dyn Sink>, batch: &Arc<Vec<Record>>, p: &Position) -> WriteOutcome {
    sink.write_at(batch.clone(), p).await.unwrap_or_else(|e| panic!("write_at {}: {e}", p.seq))
}

/// Writing a batch at the same position again, from the same sink or a new one (a restart),
/// stores nothing twice; a later position writes. Checkpoint sinks report the last position,
/// write nothing for a replay and skip any batch at or below it on their own.
pub async fn a_replayed_batch_is_stored_once(b: &impl Backend) {
    let mut s = b.open().await;
    let stream = unique("stream");
    assert_eq!(s.committed(&stream).await.unwrap(), None);
    let mut first = steps(b, "replay", 0, 50);
    if b.kind() != "influxdb" {
        // Two messages alike are two records (InfluxDB keeps one point for both): the keys come
        // from the ids, not from the content.
        first.push(first[0].clone());
    }
    let n = first.len();
    let first = Arc::new(first);
    let p1 = position(&stream, 1, 0, n);
    assert_eq!(write_at(&mut s, &first, &p1).await, WriteOutcome { written: n, rejected: vec![] });
    // InfluxDB's sink knows its server once it has answered.
    let checkpoint = s.replay_safety() == "checkpoint";
    assert_ne!(s.replay_safety(), "none", "{} should keep replays from duplicating", b.kind());
    let again = write_at(&mut s, &first, &p1).await;
    assert!(again.rejected.is_empty(), "{again:?}");
    if checkpoint {
        assert_eq!(again.written, 0, "{again:?}");
        assert_eq!(s.committed(&stream).await.unwrap(), Some(1));
    }
    drop(s);

    let mut s = b.open().await;
    let replay = write_at(&mut s, &first, &p1).await;
    assert!(replay.rejected.is_empty(), "{replay:?}");
    let second = Arc::new(steps(b, "replay", 50, 50));
    let p2 = position(&stream, 2, n as u64, 50);
    assert_eq!(write_at(&mut s, &second, &p2).await.written, 50);
    if checkpoint {
        assert_eq!(replay.written, 0, "{replay:?}");
        assert_eq!(s.committed(&stream).await.unwrap(), Some(2));
        // Other records at an old position: the sink skips them without the caller's help.
        let stale = Arc::new(steps(b, "replay", 100, 5));
        assert_eq!(write_at(&mut s, &stale, &position(&stream, 2, 100, 5)).await.written, 0);
        assert_eq!(write_at(&mut s, &stale, &position(&stream, 1, 100, 5)).await.written, 0);
        // Another stream has its own position.
        let other = unique("other");
        assert_eq!(s.committed(&other).await.unwrap(), None);
    }
    drop(s);
    let all: Vec<Record> = first.iter().chain(second.iter()).cloned().collect();
    assert_eq!(sorted(b.rows("replay").await), expected(b, &all));
}

/// A record the database refuses while the batch is written (a unique index) sends the batch
/// down the record-by-record path: the others and the position are still stored together, and
/// a replay stores nothing twice.
pub async fn a_replay_after_records_refused_at_write_time_stores_nothing_twice(b: &impl Backend) {
    b.refuse_duplicate_times("dupat").await;
    let mut s = b.open().await;
    let stream = unique("stream");
    let batch: Arc<Vec<Record>> = Arc::new(
        (0..10i64)
            .map(|i| {
                // Record 4 repeats the time of 3 with another value.
                let k = if i == 4 { 3 } else { i };
                rec("dupat", "d", T0 + k * step(b), &[("v", FieldValue::Int(i))])
            })
            .collect(),
    );
    let p = position(&stream, 7, 0, 10);
    let out = write_at(&mut s, &batch, &p).await;
    assert_eq!(
        (out.written, out.rejected.iter().map(|r| r.index).collect::<Vec<_>>()),
        (9, vec![4]),
        "{out:?}"
    );
    if s.replay_safety() == "checkpoint" {
        assert_eq!(s.committed(&stream).await.unwrap(), Some(7));
    }
    drop(s);
    let mut s = b.open().await;
    let again = write_at(&mut s, &batch, &p).await;
    assert!(again.rejected.len() <= 1, "{again:?}");
    drop(s);
    let kept: Vec<Record> =
        batch.iter().enumerate().filter(|(i, _)| *i != 4).map(|(_, r)| r.clone()).collect();
    assert_eq!(sorted(b.rows("dupat").await), expected(b, &kept));
}

/// Writes at `p` until the sink succeeds, retrying what is retryable (as the sink actor does).
async fn write_at_until_ok(s: &mut Box<dyn Sink>, batch: &Arc<Vec<Record>>, p: &Position) -> WriteOutcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match s.write_at(batch.clone(), p).await {
            Ok(out) => return out,
            Err(e) if e.is_retryable() && attempts < 100 => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no recovery after {attempts} attempts: {e}"),
        }
    }
}

/// The connection is cut while a batch is being written, at moments from "before it starts" to
/// "after it committed" (fractions of how long a first, uncut batch took), then the batch is
/// written again at the same position, as the sink actor does after a crash: every record is
/// stored exactly once.
pub async fn a_cut_mid_write_then_a_replay_stores_each_record_once(b: &impl Backend) {
    let (target, _) = b.via_proxy("127.0.0.1:1".parse().unwrap());
    let proxy = Arc::new(Proxy::start(target).await);
    let (_, options) = b.via_proxy(proxy.addr);
    let mut s = b.open_with(options).await;
    let stream = unique("stream");
    let n = 1000;
    let batch_at = |k: u64| {
        let mut records = steps(b, "cut", k as i64 * n, n);
        if b.kind() != "influxdb" {
            records.push(records[0].clone()); // two records alike are kept apart by their ids
        }
        let p = position(&stream, k + 1, k * (n as u64 + 1), records.len());
        (Arc::new(records), p)
    };
    let (first, p) = batch_at(0);
    let started = std::time::Instant::now();
    write_at_until_ok(&mut s, &first, &p).await;
    let took = started.elapsed();
    let mut all: Vec<Record> = first.to_vec();
    for (k, percent) in [0u32, 10, 25, 50, 75, 90, 100, 110, 150].into_iter().enumerate() {
        let (batch, p) = batch_at(k as u64 + 1);
        let cutter = {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                tokio::time::sleep(took * percent / 100).await;
                proxy.cut();
            })
        };
        if let Err(e) = s.write_at(batch.clone(), &p).await {
            assert!(e.is_retryable(), "{e}");
        }
        cutter.await.unwrap();
        proxy.restore();
        let out = write_at_until_ok(&mut s, &batch, &p).await;
        assert!(out.rejected.is_empty(), "{out:?}");
        all.extend(batch.iter().cloned());
    }
    drop(s);
    drop(proxy);
    assert_eq!(sorted(b.rows("cut").await), expected(b, &all));
}

/// VictoriaMetrics stores both samples of a point written twice: the sink reports `none`, and a
/// replay does duplicate (`docs/sinks/influxdb.md` says so). Fails once that changes.
pub async fn victoriametrics_keeps_a_replayed_batch_twice_and_says_so(b: &crate::backends::Victoria) {
    let mut s = b.open().await;
    let batch = Arc::new(steps(b, "twice", 0, 5));
    let p = position(&unique("stream"), 1, 0, 5);
    assert_eq!(write_at(&mut s, &batch, &p).await.written, 5);
    assert_eq!(write_at(&mut s, &batch, &p).await.written, 5);
    assert_eq!(s.replay_safety(), "none");
    let samples: usize =
        b.export(&format!("{}twice_i", b.prefix)).await.iter().map(|(_, v, _)| v.len()).sum();
    assert_eq!(samples, 10);
}
