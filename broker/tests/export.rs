//! `roost export` against the real databases, through the real binary: records written by each
//! kind's sink come back exactly (counts, times at the database's precision, values with their
//! types) as CSV and JSON lines, with the measurement, device and time filters; the zip opens
//! with standard tools and its manifest counts what is stored; bad input fails clearly. The
//! million-row tests and the admin API download are in `export_scale.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::ROOST;
use mysql_async::prelude::Queryable;
use roost::export::encode::parse_time;
use roost_connectors::SinkContext;
use roost_core::{FieldValue, Record};
use roost_testkit::{env_url, free_port, unique};
use serde_json::{json, Value};

/// 2026-01-01T00:00:00Z in ns.
const T0: i64 = 1_767_225_600_000_000_000;

/// A sink of one kind in a namespace of this test's own.
struct Setup {
    kind: &'static str,
    /// The `[[sinks]]` table's options (without name and kind), as TOML lines.
    toml: String,
    options: Value,
    /// The smallest time step stored, in ns.
    precision: i64,
    dir: tempfile::TempDir,
}

impl Setup {
    fn config(&self) -> String {
        format!("[[sinks]]\nname = \"db\"\nkind = \"{}\"\n{}", self.kind, self.toml)
    }

    /// `roost export ARGS` with this sink's config: (success, stdout, stderr).
    fn export(&self, args: &[&str]) -> (bool, Vec<u8>, String) {
        let file = self.dir.path().join("roost.toml");
        std::fs::write(&file, self.config()).unwrap();
        export_with(&file, self.dir.path(), args)
    }

    async fn write(&self, records: Vec<Record>) {
        let ctx = SinkContext { data_dir: self.dir.path().to_owned() };
        let mut sink = roost_connectors::open(self.kind, &self.options, &ctx).await.unwrap();
        for chunk in records.chunks(5000) {
            let out = sink.write(Arc::new(chunk.to_vec())).await.unwrap();
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
            assert_eq!(out.written, chunk.len());
        }
        drop(sink);
        if self.kind == "timescaledb" {
            free_single_connection(self.options["url"].as_str().unwrap()).await;
        }
    }
}

/// Waits until PGlite (one connection at a time) takes a connection again, now that the sink's
/// pool is closed, and closes that one too.
async fn free_single_connection(url: &str) {
    for _ in 0..300 {
        if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            let conn = tokio::spawn(conn);
            drop(client);
            let _ = conn.await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("PGlite at {url} takes no connection");
}

fn export_with(config: &Path, dir: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(ROOST)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .arg("export")
        .args(args)
        .env("ROOST_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn setup(kind: &'static str, options: Value, precision: i64) -> Setup {
    let toml =
        options.as_object().unwrap().iter().map(|(k, v)| format!("{k} = {}\n", toml_value(v))).collect();
    Setup { kind, toml, options, precision, dir: tempfile::tempdir().unwrap() }
}

async fn sqlite() -> Setup {
    setup("sqlite", json!({"path": "roost.db"}), 1)
}

async fn postgres(var: &str, kind: &'static str, extra: Value) -> Setup {
    let url = env_url(var);
    let schema = unique("export");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    drop(client);
    let _ = conn.await;
    let mut options = json!({"url": url, "schema": schema});
    options.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    setup(kind, options, 1000)
}

async fn mysql() -> Setup {
    let base = env_url("ROOST_TEST_MYSQL_URL");
    let database = unique("export");
    let mut conn = mysql_async::Conn::from_url(&base).await.unwrap();
    conn.query_drop(format!("CREATE DATABASE {database}")).await.unwrap();
    conn.disconnect().await.unwrap();
    let url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
    setup("mysql", json!({"url": url}), 1000)
}

fn influxdb() -> Setup {
    setup("influxdb", json!({"url": env_url("ROOST_TEST_INFLUXDB_URL"), "db": unique("export")}), 1)
}

fn mongodb() -> Setup {
    setup(
        "mongodb",
        json!({"url": env_url("ROOST_TEST_MONGODB_URL"), "database": unique("export")}),
        1_000_000,
    )
}

/// Two measurements, three devices, every value type, strings CSV must quote, NULLs.
fn records() -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..60_i64 {
        let device = ["kitchen", "garage", "attic"][(i % 3) as usize];
        // Times with nanoseconds, so each database's rounding shows.
        let time = T0 + i * 1_234_567_891;
        let mut r = Record::new(if i % 4 == 3 { "power" } else { "env" }, device, time);
        r.fields.insert("count".into(), FieldValue::Int(i * 1_000_003 - 7));
        if i % 5 != 0 {
            r.fields.insert(
                "temp".into(),
                FieldValue::Float([21.0, 0.1, -1e300, 2.5e-8, 1.0 / 3.0][(i % 5) as usize]),
            );
        }
        if i % 2 == 0 {
            r.fields.insert("ok".into(), FieldValue::Bool(i % 4 == 0));
            r.tags.insert("site".into(), format!("lab {}", i % 7));
        }
        if i % 3 == 1 {
            r.fields.insert("note".into(), FieldValue::Str(format!("a,b \"q\" ü\nline {i}")));
        }
        out.push(r);
    }
    out
}

/// A row as compared: time (ns), device, values by name.
type Row = (i64, String, BTreeMap<String, FieldValue>);

fn expected(
    records: &[Record],
    precision: i64,
    keep: impl Fn(&Record) -> bool,
) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in records.iter().filter(|r| keep(r)) {
        let mut values: BTreeMap<String, FieldValue> =
            r.tags.iter().map(|(k, v)| (k.clone(), FieldValue::Str(v.clone()))).collect();
        values.extend(r.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        let time = r.time - r.time.rem_euclid(precision);
        out.entry(r.measurement.clone()).or_default().push((time, r.device.clone(), values));
    }
    for rows in out.values_mut() {
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    }
    out
}

fn json_value(v: &Value) -> FieldValue {
    match v {
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::String(s) => FieldValue::Str(s.clone()),
        Value::Number(n) if n.is_i64() => FieldValue::Int(n.as_i64().unwrap()),
        Value::Number(n) => FieldValue::Float(n.as_f64().unwrap()),
        other => panic!("unexpected value {other}"),
    }
}

/// JSON lines, by measurement.
fn from_jsonl(out: &[u8]) -> BTreeMap<String, Vec<Row>> {
    let mut rows: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for line in std::str::from_utf8(out).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let values =
            v["values"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), json_value(v))).collect();
        let time = parse_time(v["time"].as_str().unwrap()).unwrap();
        rows.entry(v["measurement"].as_str().unwrap().to_owned()).or_default().push((
            time,
            v["device"].as_str().unwrap().to_owned(),
            values,
        ));
    }
    rows
}

/// A CSV export, read back with the types `like` says each column has.
fn from_csv(out: &[u8], like: &[Row]) -> Vec<Row> {
    let mut types: BTreeMap<String, FieldValue> = BTreeMap::new();
    for (_, _, values) in like {
        types.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut reader = csv::Reader::from_reader(out);
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(&header[..2], ["time", "device"]);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        let mut values = BTreeMap::new();
        for (name, cell) in header.iter().zip(record.iter()).skip(2) {
            if cell.is_empty() {
                continue;
            }
            let value = match &types[name] {
                FieldValue::Int(_) => FieldValue::Int(cell.parse().unwrap()),
                FieldValue::Float(_) => {
                    assert!(cell.contains(['.', 'e']), "float cell {cell:?} must not look like an integer");
                    FieldValue::Float(cell.parse().unwrap())
                }
                FieldValue::Bool(_) => FieldValue::Bool(cell.parse().unwrap()),
                FieldValue::Str(_) => FieldValue::Str(cell.to_owned()),
            };
            values.insert(name.clone(), value);
        }
        rows.push((parse_time(&record[0]).unwrap(), record[1].to_owned(), values));
    }
    rows
}

/// Every record back, as JSON lines and as CSV per measurement, then with each filter.
async fn round_trip(s: Setup) {
    let records = records();
    s.write(records.clone()).await;
    let all = expected(&records, s.precision, |_| true);

    let (ok, out, err) = s.export(&["--sink", "db", "--format", "jsonl"]);
    assert!(ok, "{err}");
    assert!(err.is_empty(), "nothing on stderr when it is not a terminal: {err}");
    assert_eq!(from_jsonl(&out), all, "{}: jsonl", s.kind);

    for (m, rows) in &all {
        let (ok, out, err) = s.export(&["--sink", "db", "--measurement", m]);
        assert!(ok, "{err}");
        assert_eq!(&from_csv(&out, rows), rows, "{}: csv of {m}", s.kind);
    }

    // Filters: one measurement, two devices, a time window that cuts inside the rows.
    let (from, to) = (T0 + 10 * 1_234_567_891 + 1, T0 + 50 * 1_234_567_891);
    let (from_s, to_s) = (rfc3339(from), rfc3339(to));
    let args = ["--sink", "db", "--measurement", "env", "--device", "kitchen", "--device", "attic"];
    let args: Vec<&str> = args.into_iter().chain(["--from", &from_s, "--to", &to_s]).collect();
    let p = s.precision;
    let want = expected(&records, p, |r| {
        let t = r.time - r.time.rem_euclid(p);
        r.measurement == "env" && r.device != "garage" && t >= from && t < to
    });
    assert!(want["env"].len() > 5 && want["env"].len() < all["env"].len());
    let (ok, out, err) = s.export(&args);
    assert!(ok, "{err}");
    assert_eq!(&from_csv(&out, &want["env"]), &want["env"], "{}: filtered csv", s.kind);
    let jsonl: Vec<&str> = args.iter().copied().chain(["--format", "jsonl"]).collect();
    let (ok, out, err) = s.export(&jsonl);
    assert!(ok, "{err}");
    assert_eq!(from_jsonl(&out), want, "{}: filtered jsonl", s.kind);

    // The zip: standard tools open it; the manifest counts what is stored; files hold the rows.
    let zip = s.dir.path().join("export.zip");
    let (ok, _, err) = s.export(&["--sink", "db", "--zip", zip.to_str().unwrap()]);
    assert!(ok, "{err}");
    let test = Command::new("unzip").arg("-t").arg(&zip).output().unwrap();
    assert!(test.status.success(), "unzip -t: {}", String::from_utf8_lossy(&test.stdout));
    let manifest = python_zip_manifest(&zip);
    assert_eq!(manifest["query"]["sink"], "db");
    assert_eq!(manifest["query"]["kind"], s.kind);
    let counts: BTreeMap<String, u64> = manifest["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), m["rows"].as_u64().unwrap()))
        .collect();
    let stored: BTreeMap<String, u64> = all.iter().map(|(m, rows)| (m.clone(), rows.len() as u64)).collect();
    assert_eq!(counts, stored, "{}: manifest counts", s.kind);
    assert_eq!(manifest["rows"], records.len() as u64);
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    for (m, rows) in &all {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name(&format!("{m}.csv")).unwrap(), &mut text).unwrap();
        assert_eq!(&from_csv(&text, rows), rows, "{}: {m}.csv in the zip", s.kind);
    }
}

/// Python's zipfile checks every CRC and prints the manifest.
fn python_zip_manifest(zip: &Path) -> Value {
    let script = "import json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\n\
                  print(z.read('manifest.json').decode())";
    let out = Command::new("python3").arg("-c").arg(script).arg(zip).output().unwrap();
    assert!(out.status.success(), "python zipfile: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rfc3339(ns: i64) -> String {
    roost::export::encode::rfc3339(ns, roost_connectors::export::Precision::Nanos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_trips_exactly() {
    round_trip(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trips_exactly() {
    round_trip(postgres("ROOST_TEST_POSTGRES_URL", "postgres", json!({})).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_round_trips_exactly() {
    let extra = json!({"write_method": "insert", "pool_size": 1, "max_statement_bytes": 32768});
    round_trip(postgres("ROOST_TEST_TIMESCALEDB_URL", "timescaledb", extra).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_round_trips_exactly() {
    round_trip(mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_round_trips_exactly() {
    round_trip(influxdb()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_round_trips_exactly() {
    round_trip(mongodb()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_a_clear_error() {
    let s = sqlite().await;
    let mut r = Record::new("env", "d1", T0);
    r.fields.insert("v".into(), FieldValue::Int(1));
    s.write(vec![r.clone(), Record { measurement: "other".into(), ..r }]).await;
    let fails = |args: &[&str], want: &str| {
        let (ok, out, err) = s.export(args);
        assert!(!ok && out.is_empty(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    fails(&["--sink", "nope"], "no sink named \"nope\"; sinks are: db");
    fails(
        &["--sink", "db", "--measurement", "nope"],
        "no measurement \"nope\" in this sink; it has: env, other",
    );
    fails(&["--sink", "db"], "CSV holds one measurement");
    fails(
        &["--sink", "db", "--measurement", "env", "--from", "yesterday"],
        "--from: \"yesterday\" is not a time",
    );
    let out = s.dir.path().join("x.csv");
    fails(&["--sink", "db", "--measurement", "nope", "--out", out.to_str().unwrap()], "no measurement");
    assert!(!out.exists() && !s.dir.path().join("x.csv.partial").exists());

    // A database that is down: nothing listens on the port.
    let down =
        setup("postgres", json!({"url": format!("postgresql://roost@127.0.0.1:{}/roost", free_port())}), 1);
    let (ok, _, err) = down.export(&["--sink", "db", "--format", "jsonl"]);
    assert!(!ok && err.contains("postgres sink: cannot connect"), "{err}");
    let down = setup("mysql", json!({"url": format!("mysql://root@127.0.0.1:{}/roost", free_port())}), 1);
    let (ok, _, err) = down.export(&["--sink", "db", "--format", "jsonl"]);
    assert!(!ok && err.contains("mysql sink: cannot connect"), "{err}");
    let down = setup("influxdb", json!({"url": format!("http://127.0.0.1:{}", free_port()), "db": "x"}), 1);
    let (ok, _, err) = down.export(&["--sink", "db", "--format", "jsonl"]);
    assert!(!ok && err.contains("influxdb sink: cannot reach the server"), "{err}");
    // No database file yet.
    let empty = setup("sqlite", json!({"path": "none.db"}), 1);
    let (ok, _, err) = empty.export(&["--sink", "db", "--format", "jsonl"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoriametrics_is_refused_with_the_reason() {
    let s = setup(
        "influxdb",
        json!({"url": env_url("ROOST_TEST_VICTORIAMETRICS_URL"), "api": "v2", "bucket": "roost"}),
        1,
    );
    let (ok, _, err) = s.export(&["--sink", "db", "--format", "jsonl"]);
    assert!(!ok, "exporting from VictoriaMetrics must fail");
    assert!(err.contains("VictoriaMetrics keeps series of numbers, not records"), "{err}");
}
