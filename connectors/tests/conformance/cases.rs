//! The cases every sink must pass. Each takes a fresh backend namespace.

use std::sync::Arc;
use std::time::Duration;

use roost_connectors::{Sink, WriteOutcome};
use roost_core::{FieldValue, Record};

use crate::backends::{Backend, Row, Val};
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
    let batch = vec![r1, r2, r3];
    let out = write(&mut s, batch.clone()).await;
    assert_eq!((out.written, out.rejected), (3, vec![]));
    drop(s);
    assert_eq!(sorted(b.rows("env").await), expected(b, &batch));
}

pub async fn a_field_that_appears_later_adds_a_column(b: &impl Backend) {
    let mut s = b.open().await;
    let first = vec![rec("m", "d", T0, &[("a", FieldValue::Int(1))])];
    let mut second =
        rec("m", "d", T0 + 1000, &[("a", FieldValue::Int(2)), ("b", FieldValue::Str("new".into()))]);
    second.tags.insert("zone".into(), "z1".into());
    assert_eq!(write(&mut s, first.clone()).await.written, 1);
    assert_eq!(write(&mut s, vec![second.clone()]).await.written, 1);
    drop(s);
    assert_eq!(sorted(b.rows("m").await), expected(b, &[first[0].clone(), second]));
}

pub async fn type_conflicts_follow_the_schema_policy(b: &impl Backend) {
    let mut s = b.open().await;
    let x = |t: i64, v: FieldValue| rec("m", "d", T0 + t * 1000, &[("x", v)]);
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
    if b.typed() {
        // bigint widened to double for 2.5; the string and the boolean are refused alone.
        assert_eq!(out.written, 2, "{out:?}");
        let refused: Vec<usize> = out.rejected.iter().map(|r| r.index).collect();
        assert_eq!(refused, [1, 3], "{out:?}");
        assert!(out.rejected[0].reason.contains("string"), "{out:?}");
        assert_eq!(got, [Val::Float(1.0), Val::Float(2.5), Val::Float(3.0)]);
    } else {
        // SQLite keeps each value with its own type.
        assert_eq!((out.written, out.rejected.len()), (4, 0));
        assert_eq!(got, [Val::Int(1), Val::Float(2.5), Val::Str("oops".into()), Val::Int(3), Val::Int(1)]);
    }
}

pub async fn hostile_identifiers_reject_only_their_record(b: &impl Backend) {
    let mut s = b.open().await;
    let one = FieldValue::Int(1);
    let batch = vec![
        rec("env", "d", T0, &[("t", FieldValue::Int(1))]),
        rec("env", "d", T0 + 1000, &[("\"; DROP TABLE x; --", one.clone())]),
        rec("x\"; DROP TABLE env; --", "d", T0 + 2000, &[("t", one.clone())]),
        rec("env", "d", T0 + 3000, &[("température", one.clone())]),
        rec("env", "d", T0 + 4000, &[(&"n".repeat(200), one.clone())]),
        rec("env", "d", T0 + 5000, &[("", one.clone())]),
        rec("env", "d", T0 + 6000, &[("Temp", one.clone()), ("temp", one.clone())]),
        rec("", "d", T0 + 7000, &[("t", one.clone())]),
        rec("env", "d", T0 + 8000, &[("t", FieldValue::Int(2))]),
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
        rec("env", "d", T0 + 1000, &[("temp", FieldValue::Int(2))]),
        rec("ENV", "d", T0 + 2000, &[("TEMP", FieldValue::Int(3))]),
    ];
    assert_eq!(write(&mut s, batch[..1].to_vec()).await.written, 1);
    assert_eq!(write(&mut s, batch[1..].to_vec()).await.written, 2);
    drop(s);
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
                T0 + i * 1000,
                &[
                    ("i", FieldValue::Int(i)),
                    ("f", FieldValue::Float(i as f64 / 3.0)),
                    ("s", FieldValue::Str(format!("row {i}"))),
                ],
            )
        })
        .collect();
    let out = write(&mut s, batch.clone()).await;
    assert_eq!((out.written, out.rejected.len()), (10_000, 0));
    drop(s);
    assert_eq!(sorted(b.rows("bulk").await), expected(b, &batch));
}

pub async fn two_sinks_writing_one_table_concurrently(b: &impl Backend) {
    let sinks = [b.open().await, b.open().await];
    let mut tasks = Vec::new();
    for (n, mut sink) in sinks.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for batch in 0..10i64 {
                let records: Vec<Record> = (0..500i64)
                    .map(|i| {
                        let time = T0 + (batch * 500 + i) * 1000;
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
        (from..from + 100).map(|i| rec("restart", "d", T0 + i * 1000, &[("i", FieldValue::Int(i))])).collect()
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
