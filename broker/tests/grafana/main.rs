//! `roost grafana` on a config with one sink of each kind: the files it writes load, hold no
//! secret in clear, and every panel of every dashboard, with its variables resolved and
//! Grafana's macros expanded as Grafana expands them, returns the series the sinks wrote to the
//! real databases. The health dashboard's PromQL runs on VictoriaMetrics holding what a real
//! Roost's `/metrics` said (`health.rs`).

mod db;
mod health;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use roost_connectors::SinkContext;
use roost_core::{FieldValue, Record};
use roost_testkit::{env_url, unique};
use serde_json::{json, Value};

use db::{number, Db};

/// 2026-01-01T00:00:00Z in seconds; the dashboards are looked at over its first five minutes,
/// with an interval of one minute.
const T0: i64 = 1_767_225_600;
const RANGE_SECS: i64 = 300;
const INTERVAL_SECS: i64 = 60;

/// kitchen at 0 s, 10 s and 70 s, garage at 0 s: a float, an integer and a string field.
fn records() -> Vec<Record> {
    let r = |device: &str, t: i64, temp: f64, n: i64| {
        let mut r = Record::new("env", device, (T0 + t) * 1_000_000_000);
        r.fields.insert("temp".into(), FieldValue::Float(temp));
        r.fields.insert("n".into(), FieldValue::Int(n));
        r.fields.insert("note".into(), FieldValue::Str(format!("at {t}")));
        r
    };
    vec![
        r("kitchen", 0, 20.0, 1),
        r("kitchen", 10, 21.0, 3),
        r("kitchen", 70, 23.5, 5),
        r("garage", 0, 5.0, 7),
    ]
}

/// Per field, per device: (time in s, mean) per one-minute interval.
fn expected(field: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let (k, g) = match field {
        "temp" => (vec![(T0, 20.5), (T0 + 60, 23.5)], vec![(T0, 5.0)]),
        "n" => (vec![(T0, 2.0), (T0 + 60, 5.0)], vec![(T0, 7.0)]),
        other => panic!("no expected series for {other}"),
    };
    BTreeMap::from([("garage".into(), g), ("kitchen".into(), k)])
}

/// Grafana's variables as one dashboard's panel sees them.
struct Vars<'a> {
    measurement: &'a str,
    field: &'a str,
    devices: &'a [String],
}

/// `text` as Grafana hands it to the datasource `plugin`: variables replaced (with the formats
/// the queries name), then the datasource's macros (PostgreSQL and MySQL expand theirs in
/// Grafana's backend, the InfluxDB datasource its `$timeFilter`).
fn expand(plugin: &str, text: &str, v: &Vars) -> String {
    let (from, to) = (T0, T0 + RANGE_SECS);
    let quoted: Vec<String> = v.devices.iter().map(|d| format!("'{}'", d.replace('\'', "''"))).collect();
    let regex =
        if v.devices.len() == 1 { v.devices[0].clone() } else { format!("({})", v.devices.join("|")) };
    let mut s = text
        .replace("${device:sqlstring}", &quoted.join(","))
        .replace("${device:regex}", &regex)
        .replace("${device:json}", &serde_json::to_string(v.devices).unwrap())
        .replace("$__interval_ms", &(INTERVAL_SECS * 1000).to_string())
        .replace("$__interval", &format!("{}m", INTERVAL_SECS / 60))
        .replace("$__from", &(from * 1000).to_string())
        .replace("$__to", &(to * 1000).to_string())
        .replace("$measurement", v.measurement)
        .replace("$field", v.field);
    let iso = |t: i64| {
        let secs = t - T0;
        format!("2026-01-01T00:{:02}:{:02}Z", secs / 60, secs % 60)
    };
    let macro_arg = |s: &str, name: &str| -> Option<(usize, usize, String)> {
        let start = s.find(name)?;
        let end = start + s[start..].find(')')? + 1;
        Some((start, end, s[start + name.len() + 1..end - 1].to_owned()))
    };
    while let Some((start, end, arg)) = macro_arg(&s, "$__timeFilter") {
        let col = arg.trim();
        let filter = match plugin {
            "mysql" => format!("{col} BETWEEN FROM_UNIXTIME({from}) AND FROM_UNIXTIME({to})"),
            _ => format!("{col} BETWEEN '{}' AND '{}'", iso(from), iso(to)),
        };
        s.replace_range(start..end, &filter);
    }
    while let Some((start, end, args)) = macro_arg(&s, "$__timeGroupAlias") {
        let col = args.split(',').next().unwrap().trim();
        let group = match plugin {
            "mysql" => format!("UNIX_TIMESTAMP({col}) DIV {INTERVAL_SECS} * {INTERVAL_SECS} AS \"time\""),
            _ => format!("floor(extract(epoch from {col})/{INTERVAL_SECS})*{INTERVAL_SECS} AS \"time\""),
        };
        s.replace_range(start..end, &group);
    }
    s.replace("$timeFilter", &format!("time >= {}ms and time <= {}ms", from * 1000, to * 1000))
}

/// The text of a target or variable query, and the collection it runs on (MongoDB).
fn query_text(q: &Value) -> (String, String) {
    match q {
        Value::String(s) => (s.clone(), String::new()),
        q => {
            let text = ["rawSql", "queryText", "query", "expr"].iter().find_map(|k| q[k].as_str()).unwrap();
            (text.to_owned(), q["collection"].as_str().unwrap_or("").to_owned())
        }
    }
}

/// A variable's values, as Grafana takes them from the answer: the first column, or `value`
/// for InfluxDB's `SHOW TAG VALUES`.
async fn variable(db: &mut Db, plugin: &str, var: &Value, v: &Vars<'_>) -> Vec<String> {
    let (text, collection) = query_text(&var["query"]);
    let rows = db.rows(&expand(plugin, &text, v), &expand(plugin, &collection, v)).await;
    let mut values: Vec<String> = rows
        .iter()
        .map(|r| {
            let cell =
                if text.starts_with("SHOW TAG VALUES") { &r["value"] } else { r.values().next().unwrap() };
            cell.as_str().map_or_else(|| cell.to_string(), str::to_owned)
        })
        .collect();
    values.sort();
    values
}

/// A time series answer as (device, [(time s, value)]), whatever the datasource names them.
fn series(plugin: &str, field: &str, rows: &[db::Row]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for r in rows {
        let (device, time, value) = match plugin {
            "frser-sqlite-datasource" => (&r["device"], number(&r["time"]).unwrap() / 1000.0, &r["value"]),
            "influxdb" => (&r["device"], number(&r["time"]).unwrap(), &r[&format!("mean_{field}")]),
            "haohanyang-mongodb-datasource" => (&r["name"], number(&r["ts"]).unwrap() / 1000.0, &r["value"]),
            _ => (&r["metric"], number(&r["time"]).unwrap(), &r["value"]),
        };
        let value = number(value).unwrap_or_else(|| panic!("no value in {r:?}"));
        out.entry(device.as_str().unwrap().to_owned()).or_default().push((time as i64, value));
    }
    for points in out.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    out
}

/// One sink of each kind, in its own corner of the test databases.
fn sinks(dir: &Path) -> Vec<(String, &'static str, Value)> {
    let id = unique("g");
    let prefix = format!("{id}_");
    vec![
        ("local".into(), "sqlite", json!({"path": dir.join("g.db")})),
        ("pg".into(), "postgres", json!({"url": env_url("ROOST_TEST_POSTGRES_URL"), "table_prefix": prefix})),
        (
            "tsdb".into(),
            "timescaledb",
            json!({"url": env_url("ROOST_TEST_TIMESCALEDB_URL"), "table_prefix": prefix, "write_method": "insert",
                   "pool_size": 1, "max_statement_bytes": 32768}),
        ),
        ("maria".into(), "mysql", json!({"url": env_url("ROOST_TEST_MYSQL_URL"), "table_prefix": prefix})),
        ("influx".into(), "influxdb", json!({"url": env_url("ROOST_TEST_INFLUXDB_URL"), "db": id})),
        ("mongo".into(), "mongodb", json!({"url": env_url("ROOST_TEST_MONGODB_URL"), "database": id})),
    ]
}

async fn connect(kind: &str, options: &Value) -> Db {
    let url = options["url"].as_str().unwrap_or("");
    match kind {
        "sqlite" => Db::Sqlite(options["path"].as_str().unwrap().into()),
        "postgres" | "timescaledb" => Db::postgres(url).await,
        "mysql" => Db::mysql(url).await,
        "influxdb" => Db::Influx { url: url.into(), db: options["db"].as_str().unwrap().into() },
        _ => Db::Mongo(
            mongodb::Client::with_uri_str(url).await.unwrap().database(options["database"].as_str().unwrap()),
        ),
    }
}

/// Runs `roost grafana` with `config` (TOML, if any) and `args` (its options, and global ones
/// such as `--data-dir`); returns the files it wrote, by
/// path under the output directory.
fn roost_grafana(dir: &Path, config: Option<&str>, args: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    if let Some(config) = config {
        let cfg = dir.join("roost.toml");
        std::fs::write(&cfg, config).unwrap();
        cmd.arg("--config").arg(cfg);
    }
    let out = dir.join("grafana");
    let run = cmd.args(["grafana", "--out"]).arg(&out).args(args).env_clear().output().unwrap();
    assert!(run.status.success(), "roost grafana: {}", String::from_utf8_lossy(&run.stderr));
    let mut files = BTreeMap::new();
    for sub in ["provisioning/datasources", "provisioning/dashboards", "dashboards", ""] {
        for entry in std::fs::read_dir(out.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.strip_prefix(&out).unwrap().display().to_string();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

/// A YAML file as JSON, through a YAML parser.
fn yaml(text: &str) -> Value {
    fn conv(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Hash(h) => {
                Value::Object(h.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), conv(v))).collect())
            }
            Yaml::Array(a) => Value::Array(a.iter().map(conv).collect()),
            Yaml::String(s) => json!(s),
            Yaml::Integer(n) => json!(n),
            Yaml::Boolean(b) => json!(b),
            Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
            Yaml::Null => Value::Null,
            other => panic!("unexpected YAML {other:?}"),
        }
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    conv(&docs[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_of_every_sink_dashboard_returns_what_the_sinks_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = sinks(dir.path());
    let ctx = SinkContext { data_dir: dir.path().into() };
    let mut config = String::new();
    for (name, kind, options) in &sinks {
        let mut sink = roost_connectors::open(kind, options, &ctx).await.unwrap();
        let out = sink.write(Arc::new(records())).await.unwrap();
        assert!(out.rejected.is_empty(), "{kind}: {out:?}");
        let mut table = options.as_object().unwrap().clone();
        table.insert("name".into(), json!(name));
        table.insert("kind".into(), json!(kind));
        config += &format!("[[sinks]]\n{}\n", toml::to_string(&table).unwrap());
    }
    let data_dir = dir.path().join("data");
    let files = roost_grafana(dir.path(), Some(&config), &["--data-dir", data_dir.to_str().unwrap()]);

    // The datasources: one per sink and Prometheus, secrets only as references.
    let text = &files["provisioning/datasources/roost.yaml"];
    assert!(!text.contains(":postgres@"), "a password in clear:\n{text}");
    let provisioning = yaml(text);
    let datasources = provisioning["datasources"].as_array().unwrap();
    let names: BTreeSet<&str> = datasources.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["local", "pg", "tsdb", "maria", "influx", "mongo", "roost-metrics"]));
    let tsdb = datasources.iter().find(|d| d["name"] == "tsdb").unwrap();
    assert_eq!(tsdb["secureJsonData"]["password"], "${ROOST_GRAFANA_TSDB_PASSWORD}");
    assert!(text.contains("# ${ROOST_GRAFANA_TSDB_PASSWORD}: "), "{text}");
    let local = datasources.iter().find(|d| d["name"] == "local").unwrap();
    assert_eq!(local["jsonData"]["path"], json!(dir.path().join("g.db")));
    let provider = yaml(&files["provisioning/dashboards/roost.yaml"]);
    assert_eq!(provider["providers"][0]["options"]["path"], "/var/lib/grafana/dashboards/roost");
    assert!(
        yaml(&files["prometheus.yml"])["scrape_configs"][0]["static_configs"][0]["targets"][0].is_string()
    );

    for (name, kind, options) in &sinks {
        let ds = datasources.iter().find(|d| d["name"] == json!(name)).unwrap();
        let uid = ds["uid"].as_str().unwrap();
        let plugin = ds["type"].as_str().unwrap();
        let dashboard: Value = serde_json::from_str(&files[&format!("dashboards/{uid}.json")]).unwrap();
        check_dashboard(kind, plugin, &dashboard, &mut connect(kind, options).await, options).await;
    }
}

async fn check_dashboard(kind: &str, plugin: &str, dashboard: &Value, db: &mut Db, options: &Value) {
    let vars: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let prefix = options["table_prefix"].as_str().unwrap_or("");
    let table = format!("{prefix}env");
    let none = Vars { measurement: "", field: "", devices: &[] };
    // The measurement: listed, or typed in (MongoDB).
    let measurement = &vars["measurement"];
    if measurement["type"] == "query" {
        assert_eq!(variable(db, plugin, measurement, &none).await, std::slice::from_ref(&table), "{kind}");
    } else {
        assert_eq!(measurement["type"], "textbox", "{kind}");
    }
    let v = Vars { measurement: &table, ..none };
    let devices = variable(db, plugin, vars["device"], &v).await;
    assert_eq!(devices, ["garage", "kitchen"], "{kind}");
    let fields = variable(db, plugin, vars["field"], &v).await;
    let numeric: Vec<&str> = fields.iter().map(String::as_str).filter(|f| *f != "note").collect();
    assert_eq!(numeric, ["n", "temp"], "{kind}: fields {fields:?}");
    // InfluxQL lists string fields too; their panel must come back empty, not fail.
    assert_eq!(fields.len(), if kind == "influxdb" { 3 } else { 2 }, "{kind}: {fields:?}");

    let panels = dashboard["panels"].as_array().unwrap();
    let repeated = panels.iter().find(|p| p["repeat"] == "field").unwrap();
    assert_eq!(repeated["type"], "timeseries");
    for field in &fields {
        let v = Vars { measurement: &table, field, devices: &devices };
        let (text, collection) = query_text(&repeated["targets"][0]);
        let rows = db.rows(&expand(plugin, &text, &v), &expand(plugin, &collection, &v)).await;
        let got = series(plugin, field, &rows);
        if field == "note" {
            assert!(got.is_empty(), "{kind}: {got:?}");
        } else {
            assert_eq!(got, expected(field), "{kind}: {field}");
        }
        // One device picked: only its series.
        let one = [String::from("garage")];
        let v = Vars { devices: &one, ..v };
        let rows = db.rows(&expand(plugin, &text, &v), &expand(plugin, &collection, &v)).await;
        let picked: Vec<String> = series(plugin, field, &rows).into_keys().collect();
        if field != "note" {
            assert_eq!(picked, ["garage"], "{kind}: {field}");
        }
    }

    let latest = panels.iter().find(|p| p["type"] == "table").unwrap();
    let v = Vars { measurement: &table, field: "", devices: &devices };
    let (text, collection) = query_text(&latest["targets"][0]);
    let rows = db.rows(&expand(plugin, &text, &v), &expand(plugin, &collection, &v)).await;
    let mut got: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|r| {
            let device = r.get("device").or_else(|| r.get("meta").map(|m| &m["device"])).unwrap();
            let (temp, n) = match kind {
                "influxdb" => (&r["last_temp"], &r["last_n"]),
                _ => (&r["temp"], &r["n"]),
            };
            (device.as_str().unwrap().to_owned(), number(temp).unwrap(), number(n).unwrap())
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, [("garage".into(), 5.0, 7.0), ("kitchen".into(), 23.5, 5.0)], "{kind}: {rows:?}");
}

/// The files `roost grafana` writes with `config` and `args` are those in `deploy/<shipped>`.
fn assert_shipped(config: Option<&str>, args: &[&str], shipped: &str) {
    let dir = tempfile::tempdir().unwrap();
    let files = roost_grafana(dir.path(), config, args);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(shipped);
    for (rel, text) in &files {
        let want =
            std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("deploy/{shipped}/{rel}: {e}"));
        assert_eq!(
            text,
            &want,
            "deploy/{shipped}/{rel} is out of date: run `roost grafana --out deploy/{shipped} {}` (docs/grafana.md)",
            args.join(" ")
        );
    }
    assert_eq!(files.len(), 5, "{:?}", files.keys());
}

#[test]
fn the_shipped_files_are_what_roost_grafana_writes_for_the_package_defaults() {
    assert_shipped(None, &["--data-dir", "/var/lib/roost"], "grafana");
}

#[test]
fn the_compose_files_are_what_roost_grafana_writes_for_the_compose_configuration() {
    let compose =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose.yaml"))
            .unwrap();
    let compose = yaml(&compose);
    // Compose puts the password in; any stands in for it, as only a reference is written.
    let config =
        compose["configs"]["roost_toml"]["content"].as_str().unwrap().replace("${POSTGRES_PASSWORD}", "pw");
    let args = ["--prometheus-url", "http://prometheus:9090", "--scrape-target", "roost:8080"];
    assert_shipped(Some(&config), &args, "grafana-compose");
    let volumes = compose["services"]["grafana"]["volumes"].to_string();
    assert!(volumes.contains("./grafana-compose/provisioning/datasources:"), "{volumes}");
    let env = &compose["services"]["grafana"]["environment"];
    assert_eq!(env["ROOST_GRAFANA_PG_PASSWORD"], "${POSTGRES_PASSWORD}");
}
