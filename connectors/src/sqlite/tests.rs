//! Tests of the SQLite sink against real database files.
#![allow(clippy::type_complexity)]

use std::sync::Arc;

use roost_core::{FieldValue, Record};
use rusqlite::Connection;

use super::*;
use crate::{OpenSink, Sink, SinkContext};

fn record(m: &str, device: &str, time: i64, fields: &[(&str, FieldValue)]) -> Record {
    let mut r = Record::new(m, device, time);
    for (k, v) in fields {
        r.fields.insert((*k).into(), v.clone());
    }
    r
}

async fn sink(dir: &tempfile::TempDir) -> SqliteSink {
    let ctx = SinkContext { data_dir: dir.path().to_owned() };
    SqliteSink::open(SqliteConfig::default(), "sqlite", &ctx).await.unwrap()
}

#[tokio::test]
async fn every_type_round_trips_and_columns_appear_as_fields_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(&dir).await;
    let mut first = record("env", "d1", 1, &[("t", FieldValue::Float(21.5)), ("n", FieldValue::Int(-3))]);
    first.tags.insert("room".into(), "kitchen".into());
    let second = record(
        "env",
        "d2",
        i64::MAX,
        &[("ok", FieldValue::Bool(true)), ("s", FieldValue::Str("hé \"quoted\"".into()))],
    );
    let out = s.write(Arc::new(vec![first, second])).await.unwrap();
    assert_eq!(out.written, 2);
    assert!(out.rejected.is_empty());

    let conn = Connection::open(dir.path().join("roost.db")).unwrap();
    let row: (i64, String, Option<String>, Option<f64>, Option<i64>, Option<i64>, Option<String>) = conn
        .query_row("SELECT time, device, room, t, n, ok, s FROM env WHERE device = 'd1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .unwrap();
    assert_eq!(row, (1, "d1".into(), Some("kitchen".into()), Some(21.5), Some(-3), None, None));
    let row: (i64, Option<i64>, Option<String>, Option<f64>) = conn
        .query_row("SELECT time, ok, s, t FROM env WHERE device = 'd2'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!(row, (i64::MAX, Some(1), Some("hé \"quoted\"".into()), None));
}

#[tokio::test]
async fn hostile_names_are_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(&dir).await;
    let batch = vec![
        record("env", "d1", 1, &[("t", FieldValue::Int(1))]),
        record("x\"; DROP TABLE env; --", "d1", 2, &[("t", FieldValue::Int(2))]),
        record("env", "d1", 3, &[("a\"; DROP TABLE env; --", FieldValue::Int(3))]),
        record("env", "d1", 4, &[("T", FieldValue::Int(4)), ("t", FieldValue::Int(4))]),
        record("sqlite_master", "d1", 5, &[("t", FieldValue::Int(5))]),
        record("env", "d1", 6, &[("device", FieldValue::Int(6))]),
        record("env", "d1", 7, &[("t", FieldValue::Int(7))]),
    ];
    let out = s.write(Arc::new(batch)).await.unwrap();
    assert_eq!(out.written, 2);
    let rejected: Vec<usize> = out.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [1, 2, 3, 4, 5]);
    let conn = Connection::open(dir.path().join("roost.db")).unwrap();
    let times: Vec<i64> = conn
        .prepare("SELECT time FROM env ORDER BY time")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(times, [1, 7]);
}

#[tokio::test]
async fn a_second_sink_on_the_same_file_sees_columns_the_first_added() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = sink(&dir).await;
    let mut b = sink(&dir).await;
    a.write(Arc::new(vec![record("m", "d", 1, &[("x", FieldValue::Int(1))])])).await.unwrap();
    b.write(Arc::new(vec![record("m", "d", 2, &[("x", FieldValue::Int(2))])])).await.unwrap();
    a.write(Arc::new(vec![record("m", "d", 3, &[("y", FieldValue::Int(3))])])).await.unwrap();
    // b's cached layout lacks y; it must notice the column exists rather than fail.
    let out = b.write(Arc::new(vec![record("m", "d", 4, &[("y", FieldValue::Int(4))])])).await.unwrap();
    assert_eq!(out.written, 1);
    let conn = Connection::open(dir.path().join("roost.db")).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM m", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn empty_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(&dir).await;
    assert_eq!(s.write(Arc::new(vec![])).await.unwrap(), crate::WriteOutcome::default());
}
