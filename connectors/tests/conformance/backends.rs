//! One backend per real database: it gives each test its own namespace (a file, a schema, a
//! database), opens sinks on it, and reads rows back through the database's own client.
#![allow(async_fn_in_trait)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use roost_connectors::{Sink, SinkContext};
use roost_core::{FieldValue, Record};
use roost_testkit::{env_url, influxdb, unique, victoria};
use serde_json::{json, Value};
use tokio_postgres::types::Type;

/// A stored value as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// A stored row: time in ns, device, and every non-NULL column by lower-cased name.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub time: i64,
    pub device: String,
    pub values: BTreeMap<String, Val>,
}

/// What a database does with a value whose type differs from the one stored before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conflicts {
    /// The typed SQL schema policy: integer columns widen to double for a float, other
    /// mismatches are refused alone.
    Widen,
    /// Every value keeps its own type (SQLite's dynamic typing, MongoDB documents).
    KeepEach,
    /// InfluxDB: the first type of a field in a shard wins; the server refuses the others.
    FirstTypeWins,
    /// VictoriaMetrics: every number (and boolean, as 0/1) is a float; strings are refused by
    /// the sink (`string_fields = "reject"`).
    NumbersOnly,
}

pub trait Backend {
    fn kind(&self) -> &'static str;
    fn options(&self) -> Value;
    /// The database's address, and the options that reach it through `proxy` instead.
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value);
    /// The smallest time step the database keeps, in ns.
    fn time_precision_ns(&self) -> i64;
    /// true: the typed SQL schema policy; false: SQLite's dynamic typing (values keep their type).
    fn typed(&self) -> bool;
    /// What a type conflict does.
    fn conflicts(&self) -> Conflicts {
        if self.typed() {
            Conflicts::Widen
        } else {
            Conflicts::KeepEach
        }
    }
    /// true (SQL): names that differ only by case are one table/column; false (InfluxDB,
    /// VictoriaMetrics, MongoDB): they are distinct measurements, fields, collections.
    fn names_fold_case(&self) -> bool {
        true
    }
    /// Whether string fields are stored (VictoriaMetrics stores only numbers).
    fn stores_strings(&self) -> bool {
        true
    }
    /// Makes the database refuse a second record with the same (device, time) in `table`.
    async fn refuse_duplicate_times(&self, _table: &str) {
        unimplemented!("{} has no unique constraint to arrange", self.kind())
    }
    /// How a field value reads back.
    fn expect(&self, v: &FieldValue) -> Val {
        match v {
            FieldValue::Int(i) => Val::Int(*i),
            FieldValue::Float(f) => Val::Float(*f),
            FieldValue::Bool(b) => Val::Bool(*b),
            FieldValue::Str(s) => Val::Str(s.clone()),
        }
    }
    async fn rows(&self, table: &str) -> Vec<Row>;
    /// Tables (measurements, collections) in the namespace, sorted; lower-cased where
    /// [`Backend::names_fold_case`].
    async fn tables(&self) -> Vec<String>;
    /// Creates a table with a layout Roost did not make.
    async fn create_foreign_table(&self, table: &str);
    /// Adds an index named `index` on `table` (typed databases only), as an older Roost did.
    async fn create_index(&self, table: &str, index: &str) {
        unreachable!("{}: no indexes to create on {table} ({index})", self.kind())
    }

    async fn open_with(&self, options: Value) -> Box<dyn Sink> {
        let ctx = SinkContext { data_dir: std::env::temp_dir() };
        roost_connectors::open(self.kind(), &options, &ctx)
            .await
            .unwrap_or_else(|e| panic!("opening sink: {e}"))
    }
    async fn open(&self) -> Box<dyn Sink> {
        self.open_with(self.options()).await
    }
    /// The row a record becomes.
    fn expected_row(&self, r: &Record) -> Row {
        let p = self.time_precision_ns();
        let mut values: BTreeMap<String, Val> =
            r.tags.iter().map(|(k, v)| (k.to_ascii_lowercase(), Val::Str(v.clone()))).collect();
        values.extend(r.fields.iter().map(|(k, v)| (k.to_ascii_lowercase(), self.expect(v))));
        Row { time: r.time - r.time.rem_euclid(p), device: r.device.clone(), values }
    }
}

/// `scheme://user@host:port/rest` -> the host:port, and the URL with `addr` in its place.
fn swap_host(url: &str, addr: SocketAddr) -> (SocketAddr, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.split_once('@').unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (hostport.parse().unwrap(), format!("{scheme}://{userinfo}@{addr}{path}"))
}

// ---------------------------------------------------------------------------------------------

pub struct Sqlite {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Sqlite {
    pub async fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roost.db");
        Sqlite { _dir: dir, file }
    }
}

impl Backend for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
    fn options(&self) -> Value {
        json!({"path": self.file})
    }
    fn via_proxy(&self, _: SocketAddr) -> (SocketAddr, Value) {
        unreachable!("an embedded file has no network to cut")
    }
    fn time_precision_ns(&self) -> i64 {
        1
    }
    fn typed(&self) -> bool {
        false
    }
    fn expect(&self, v: &FieldValue) -> Val {
        match v {
            FieldValue::Bool(b) => Val::Int(i64::from(*b)),
            FieldValue::Int(i) => Val::Int(*i),
            FieldValue::Float(f) => Val::Float(*f),
            FieldValue::Str(s) => Val::Str(s.clone()),
        }
    }
    async fn rows(&self, table: &str) -> Vec<Row> {
        use rusqlite::types::ValueRef;
        let conn = rusqlite::Connection::open(&self.file).unwrap();
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY time, device")).unwrap();
        let names: Vec<String> = stmt.column_names().map(|n| n.to_ascii_lowercase()).collect();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let mut values = BTreeMap::new();
            for (i, name) in names.iter().enumerate().skip(2) {
                let v = match r.get_ref(i).unwrap() {
                    ValueRef::Null => continue,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Real(v) => Val::Float(v),
                    ValueRef::Text(t) => Val::Str(String::from_utf8(t.to_vec()).unwrap()),
                    ValueRef::Blob(_) => panic!("blob in {table}.{name}"),
                };
                values.insert(name.clone(), v);
            }
            out.push(Row { time: r.get(0).unwrap(), device: r.get(1).unwrap(), values });
        }
        out
    }
    async fn tables(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(&self.file).unwrap();
        let mut stmt =
            conn.prepare("SELECT lower(name) FROM sqlite_schema WHERE type = 'table' ORDER BY 1").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }
    async fn refuse_duplicate_times(&self, table: &str) {
        let conn = rusqlite::Connection::open(&self.file).unwrap();
        let sql = format!(
            "CREATE TABLE \"{table}\" (time INTEGER NOT NULL, device TEXT NOT NULL, UNIQUE (device, time))"
        );
        conn.execute_batch(&sql).unwrap();
    }
    async fn create_foreign_table(&self, table: &str) {
        let conn = rusqlite::Connection::open(&self.file).unwrap();
        conn.execute_batch(&format!("CREATE TABLE \"{table}\" (id INTEGER PRIMARY KEY, v TEXT)")).unwrap();
    }
    async fn create_index(&self, table: &str, index: &str) {
        let conn = rusqlite::Connection::open(&self.file).unwrap();
        conn.execute_batch(&format!("CREATE INDEX \"{index}\" ON \"{table}\" (device, time)")).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PgFlavor {
    /// PostgreSQL 15, binary COPY.
    Postgres,
    /// TimescaleDB on PGlite: one connection at a time, multi-row INSERT (COPY crashes it).
    Timescale,
}

pub struct Postgres {
    flavor: PgFlavor,
    url: String,
    pub schema: String,
}

impl Postgres {
    pub async fn new(flavor: PgFlavor) -> Postgres {
        let url = env_url(match flavor {
            PgFlavor::Postgres => "ROOST_TEST_POSTGRES_URL",
            PgFlavor::Timescale => "ROOST_TEST_TIMESCALEDB_URL",
        });
        let schema = unique("conf");
        let pg = Postgres { flavor, url, schema };
        pg.client().await.batch_execute(&format!("CREATE SCHEMA \"{}\"", pg.schema)).await.unwrap();
        pg
    }

    /// A short-lived connection (PGlite serves one at a time: drop it before a sink connects).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Backend for Postgres {
    fn kind(&self) -> &'static str {
        match self.flavor {
            PgFlavor::Postgres => "postgres",
            PgFlavor::Timescale => "timescaledb",
        }
    }
    fn options(&self) -> Value {
        match self.flavor {
            PgFlavor::Postgres => json!({"url": self.url, "schema": self.schema}),
            PgFlavor::Timescale => {
                json!({"url": self.url, "schema": self.schema, "write_method": "insert", "pool_size": 1, "max_statement_bytes": 32768})
            }
        }
    }
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value) {
        let (target, url) = swap_host(&self.url, proxy);
        let mut options = self.options();
        options["url"] = json!(url);
        (target, options)
    }
    fn time_precision_ns(&self) -> i64 {
        1000
    }
    fn typed(&self) -> bool {
        true
    }
    async fn rows(&self, table: &str) -> Vec<Row> {
        let client = self.client().await;
        let cols = client
            .query_typed(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND lower(table_name) = lower($2) ORDER BY ordinal_position",
                &[(&self.schema, Type::TEXT), (&table, Type::TEXT)],
            )
            .await
            .unwrap();
        let cols: Vec<(String, String)> = cols.iter().map(|r| (r.get(0), r.get(1))).collect();
        let sql = format!(
            "SELECT (extract(epoch FROM time) * 1000000)::int8, * FROM \"{}\".\"{table}\" ORDER BY time, device",
            self.schema
        );
        let mut out = Vec::new();
        for r in client.query_typed(&sql, &[]).await.unwrap() {
            let mut values = BTreeMap::new();
            for (i, (name, ty)) in cols.iter().enumerate().skip(2) {
                let at = i + 1;
                let v = match ty.as_str() {
                    "bigint" => r.get::<_, Option<i64>>(at).map(Val::Int),
                    "double precision" => r.get::<_, Option<f64>>(at).map(Val::Float),
                    "boolean" => r.get::<_, Option<bool>>(at).map(Val::Bool),
                    "text" => r.get::<_, Option<String>>(at).map(Val::Str),
                    other => panic!("unexpected column type {other} for {name}"),
                };
                if let Some(v) = v {
                    values.insert(name.to_ascii_lowercase(), v);
                }
            }
            out.push(Row { time: r.get::<_, i64>(0) * 1000, device: r.get(2), values });
        }
        out
    }
    async fn tables(&self) -> Vec<String> {
        let client = self.client().await;
        let rows = client
            .query_typed(
                "SELECT lower(table_name::text) FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
                &[(&self.schema, Type::TEXT)],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
    async fn refuse_duplicate_times(&self, table: &str) {
        let sql = format!(
            "CREATE TABLE \"{}\".\"{table}\" (time timestamptz NOT NULL, device text NOT NULL, UNIQUE (device, time))",
            self.schema
        );
        self.client().await.batch_execute(&sql).await.unwrap();
    }
    async fn create_foreign_table(&self, table: &str) {
        let sql = format!("CREATE TABLE \"{}\".\"{table}\" (id serial PRIMARY KEY, v text)", self.schema);
        self.client().await.batch_execute(&sql).await.unwrap();
    }
    async fn create_index(&self, table: &str, index: &str) {
        let sql = format!("CREATE INDEX \"{index}\" ON \"{}\".\"{table}\" (device, time)", self.schema);
        self.client().await.batch_execute(&sql).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

pub struct Mysql {
    url: String,
    database: String,
}

impl Mysql {
    pub async fn new() -> Mysql {
        let base = env_url("ROOST_TEST_MYSQL_URL");
        let database = unique("conf");
        let mut conn = mysql_async::Conn::from_url(&base).await.unwrap();
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!("CREATE DATABASE `{database}`")).await.unwrap();
        conn.disconnect().await.unwrap();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => unreachable!(),
        };
        Mysql { url, database }
    }

    async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(&self.url).await.unwrap()
    }
}

impl Backend for Mysql {
    fn kind(&self) -> &'static str {
        "mysql"
    }
    fn options(&self) -> Value {
        json!({"url": self.url})
    }
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value) {
        let (target, url) = swap_host(&self.url, proxy);
        (target, json!({"url": url}))
    }
    fn time_precision_ns(&self) -> i64 {
        1000
    }
    fn typed(&self) -> bool {
        true
    }
    async fn rows(&self, table: &str) -> Vec<Row> {
        use mysql_async::prelude::Queryable;
        use mysql_async::Value as My;
        let mut conn = self.conn().await;
        let cols: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.columns \
                 WHERE table_schema = ? AND lower(table_name) = lower(?) ORDER BY ORDINAL_POSITION",
                (&self.database, table),
            )
            .await
            .unwrap();
        let sql = format!(
            "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', time), t.* FROM `{table}` t ORDER BY time, device"
        );
        let rows: Vec<mysql_async::Row> = conn.exec(sql, ()).await.unwrap();
        let mut out = Vec::new();
        for r in rows {
            let mut values = BTreeMap::new();
            for (i, (name, ty)) in cols.iter().enumerate().skip(2) {
                let v = match (r.as_ref(i + 1).unwrap(), ty.as_str()) {
                    (My::NULL, _) => continue,
                    (My::Int(v), t) if t.starts_with("tinyint(1)") => Val::Bool(*v != 0),
                    (My::Int(v), _) => Val::Int(*v),
                    (My::Double(v), _) => Val::Float(*v),
                    (My::Bytes(b), _) => Val::Str(String::from_utf8(b.clone()).unwrap()),
                    (other, t) => panic!("unexpected value {other:?} in {name} ({t})"),
                };
                values.insert(name.to_ascii_lowercase(), v);
            }
            let micros: i64 = r.get(0).unwrap();
            out.push(Row { time: micros * 1000, device: r.get(2).unwrap(), values });
        }
        conn.disconnect().await.unwrap();
        out
    }
    async fn tables(&self) -> Vec<String> {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn().await;
        let t: Vec<String> = conn
            .exec(
                "SELECT lower(table_name) FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
                (&self.database,),
            )
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        t
    }
    async fn refuse_duplicate_times(&self, table: &str) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn().await;
        let sql = format!(
            "CREATE TABLE `{table}` (time DATETIME(6) NOT NULL, device VARCHAR(255) NOT NULL, UNIQUE KEY (device, time))"
        );
        conn.query_drop(sql).await.unwrap();
        conn.disconnect().await.unwrap();
    }
    async fn create_foreign_table(&self, table: &str) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn().await;
        conn.query_drop(format!("CREATE TABLE `{table}` (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
    }
    async fn create_index(&self, table: &str, index: &str) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn().await;
        conn.query_drop(format!("CREATE INDEX `{index}` ON `{table}` (device, time)")).await.unwrap();
        conn.disconnect().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

/// `http://host:port[/...]` -> the host:port, and the URL with `addr` in its place.
fn swap_http_host(url: &str, addr: SocketAddr) -> (SocketAddr, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (hostport, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    (hostport.parse().unwrap(), format!("{scheme}://{addr}{path}"))
}

/// InfluxDB 1.x through the v1 API: a database per test, read back with InfluxQL.
pub struct Influx {
    url: String,
    db: String,
}

impl Influx {
    pub async fn new() -> Influx {
        let url = env_url("ROOST_TEST_INFLUXDB_URL");
        let db = unique("conf");
        let b = Influx { url, db };
        b.query(&format!("CREATE DATABASE \"{}\"", b.db)).await;
        b
    }

    /// Runs an InfluxQL statement in the test's database; the first result.
    pub async fn query(&self, q: &str) -> Value {
        let v = influxdb::query(&self.url, &self.db, q, Some("ns")).await;
        assert!(v["results"][0].get("error").is_none() && v.get("error").is_none(), "{q}: {v}");
        v["results"][0].clone()
    }

    /// The (name, values) of each row of the first series of `q`.
    async fn series(&self, q: &str) -> (Vec<String>, Vec<Vec<Value>>) {
        let r = self.query(q).await;
        let Some(s) = r["series"].get(0) else { return (vec![], vec![]) };
        let cols = s["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        let rows = s["values"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect();
        (cols, rows)
    }
}

impl Backend for Influx {
    fn kind(&self) -> &'static str {
        "influxdb"
    }
    fn options(&self) -> Value {
        json!({"url": self.url, "api": "v1", "db": self.db})
    }
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value) {
        let (target, url) = swap_http_host(&self.url, proxy);
        (target, json!({"url": url, "api": "v1", "db": self.db, "timeout_ms": 2000}))
    }
    fn time_precision_ns(&self) -> i64 {
        1
    }
    fn typed(&self) -> bool {
        false
    }
    fn conflicts(&self) -> Conflicts {
        Conflicts::FirstTypeWins
    }
    fn names_fold_case(&self) -> bool {
        false
    }
    async fn rows(&self, table: &str) -> Vec<Row> {
        let (_, types) = self.series(&format!("SHOW FIELD KEYS FROM \"{table}\"")).await;
        let mut field_types: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in types {
            field_types.entry(t[0].as_str().unwrap().into()).or_default().push(t[1].as_str().unwrap().into());
        }
        let (cols, rows) = self.series(&format!("SELECT * FROM \"{table}\"")).await;
        rows.into_iter()
            .map(|r| {
                let mut row =
                    Row { time: r[0].as_i64().unwrap(), device: String::new(), values: BTreeMap::new() };
                for (name, v) in cols.iter().zip(&r).skip(1) {
                    let val = match (field_types.get(name), v) {
                        (_, Value::Null) => continue,
                        (None, Value::String(s)) if name == "device" => {
                            row.device = s.clone();
                            continue;
                        }
                        (None, Value::String(s)) => Val::Str(s.clone()),
                        (Some(_), Value::String(s)) => Val::Str(s.clone()),
                        (Some(_), Value::Bool(b)) => Val::Bool(*b),
                        (Some(t), Value::Number(n)) if t.iter().all(|t| t == "integer") => {
                            Val::Int(n.as_i64().unwrap())
                        }
                        (Some(_), Value::Number(n)) => Val::Float(n.as_f64().unwrap()),
                        (t, v) => panic!("unexpected {v} in {table}.{name} ({t:?})"),
                    };
                    row.values.insert(name.to_ascii_lowercase(), val);
                }
                row
            })
            .collect()
    }
    async fn tables(&self) -> Vec<String> {
        let (_, rows) = self.series("SHOW MEASUREMENTS").await;
        let mut t: Vec<String> = rows.into_iter().map(|r| r[0].as_str().unwrap().to_owned()).collect();
        t.sort();
        t
    }
    async fn create_foreign_table(&self, _: &str) {
        unreachable!("InfluxDB is schemaless: there is no layout a measurement could have")
    }
}

// ---------------------------------------------------------------------------------------------

/// VictoriaMetrics through the v2 API: a measurement prefix per test, read back through
/// `/api/v1/export` (polled: samples become visible one to two seconds after the write).
pub struct Victoria {
    url: String,
    pub prefix: String,
}

/// VictoriaMetrics keeps about 12 significant digits (truncated); both sides of a comparison
/// are rounded to 11.
pub fn vm_round(f: f64) -> f64 {
    format!("{f:.10e}").parse().unwrap()
}

impl Victoria {
    pub async fn new() -> Victoria {
        Victoria { url: env_url("ROOST_TEST_VICTORIAMETRICS_URL"), prefix: format!("{}_", unique("conf")) }
    }

    /// Every exported series whose name matches `regex`: (labels, values, timestamps in ms).
    async fn export_once(&self, regex: &str) -> Vec<(BTreeMap<String, String>, Vec<f64>, Vec<i64>)> {
        victoria::export(&self.url, &format!("{{__name__=~\"{regex}\"}}"))
            .await
            .into_iter()
            .map(|v| {
                let labels = v["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let values = v["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                let times = v["timestamps"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
                (labels, values, times)
            })
            .collect()
    }

    /// [`Self::export_once`] once the sample count has held still for 5.5 s (and, while it is 0, for
    /// 40 s since the first look: VictoriaMetrics 1.79 makes new samples searchable within about
    /// 5 s on a quiet machine, but took over 10 s while the whole suite ran; 120 s at most).
    pub async fn export(&self, regex: &str) -> Vec<(BTreeMap<String, String>, Vec<f64>, Vec<i64>)> {
        let started = std::time::Instant::now();
        let mut last = (usize::MAX, std::time::Instant::now());
        loop {
            let got = self.export_once(regex).await;
            let n: usize = got.iter().map(|s| s.1.len()).sum();
            if n != last.0 {
                last = (n, std::time::Instant::now());
            } else if last.1.elapsed() > std::time::Duration::from_millis(5500)
                && (n > 0 || started.elapsed().as_secs() >= 40)
            {
                return got;
            }
            assert!(started.elapsed().as_secs() < 120, "export of {regex} did not settle");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

impl Backend for Victoria {
    fn kind(&self) -> &'static str {
        "influxdb"
    }
    fn options(&self) -> Value {
        json!({"url": self.url, "api": "v2", "org": "roost", "bucket": "roost",
               "measurement_prefix": self.prefix, "string_fields": "reject"})
    }
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value) {
        let (target, url) = swap_http_host(&self.url, proxy);
        let mut o = self.options();
        o["url"] = json!(url);
        o["timeout_ms"] = json!(2000);
        (target, o)
    }
    fn time_precision_ns(&self) -> i64 {
        1_000_000
    }
    fn typed(&self) -> bool {
        false
    }
    fn conflicts(&self) -> Conflicts {
        Conflicts::NumbersOnly
    }
    fn names_fold_case(&self) -> bool {
        false
    }
    fn stores_strings(&self) -> bool {
        false
    }
    fn expect(&self, v: &FieldValue) -> Val {
        match v {
            FieldValue::Int(i) => Val::Float(vm_round(*i as f64)),
            FieldValue::Float(f) => Val::Float(vm_round(*f)),
            FieldValue::Bool(b) => Val::Float(if *b { 1.0 } else { 0.0 }),
            FieldValue::Str(s) => panic!("VictoriaMetrics stores no strings ({s:?})"),
        }
    }
    async fn rows(&self, table: &str) -> Vec<Row> {
        let name = format!("{}{table}_", self.prefix);
        let mut rows: BTreeMap<(i64, Vec<(String, String)>), Row> = BTreeMap::new();
        for (mut labels, values, times) in self.export(&format!("{name}.+")).await {
            let field = labels.remove("__name__").unwrap()[name.len()..].to_ascii_lowercase();
            let device = labels.remove("device").unwrap_or_default();
            for (v, t) in values.into_iter().zip(times) {
                let mut key: Vec<(String, String)> = labels.clone().into_iter().collect();
                key.push(("device".into(), device.clone()));
                let row = rows.entry((t, key)).or_insert_with(|| Row {
                    time: t * 1_000_000,
                    device: device.clone(),
                    values: labels
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), Val::Str(v.clone())))
                        .collect(),
                });
                let old = row.values.insert(field.clone(), Val::Float(vm_round(v)));
                assert!(old.is_none(), "two samples of {field} at {t} ms for one series");
            }
        }
        rows.into_values().collect()
    }
    async fn tables(&self) -> Vec<String> {
        // Metric names are `<measurement>_<field>`; the cases' measurements hold no '_'.
        let mut t: Vec<String> = self
            .export(&format!("{}.+", self.prefix))
            .await
            .into_iter()
            .map(|(l, _, _)| l["__name__"][self.prefix.len()..].split('_').next().unwrap().to_owned())
            .collect();
        t.sort();
        t.dedup();
        t
    }
    async fn create_foreign_table(&self, _: &str) {
        unreachable!("VictoriaMetrics is schemaless")
    }
}

// ---------------------------------------------------------------------------------------------

/// A MongoDB-wire server (SecantusDB here): a database per test, read back with the driver.
pub struct Mongo {
    url: String,
    db: String,
    timeseries: bool,
}

impl Mongo {
    pub async fn new(timeseries: bool) -> Mongo {
        Mongo { url: env_url("ROOST_TEST_MONGODB_URL"), db: unique("conf"), timeseries }
    }

    pub async fn database(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.url).await.unwrap().database(&self.db)
    }
}

impl Backend for Mongo {
    fn kind(&self) -> &'static str {
        "mongodb"
    }
    fn options(&self) -> Value {
        json!({"url": self.url, "database": self.db, "timeseries": self.timeseries})
    }
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value) {
        let (target, url) = swap_http_host(&self.url, proxy);
        let mut o = self.options();
        o["url"] = json!(format!("{url}&serverSelectionTimeoutMS=2000&heartbeatFrequencyMS=500"));
        (target, o)
    }
    fn time_precision_ns(&self) -> i64 {
        1_000_000
    }
    fn typed(&self) -> bool {
        false
    }
    fn names_fold_case(&self) -> bool {
        false
    }
    async fn rows(&self, table: &str) -> Vec<Row> {
        use mongodb::bson::{Bson, Document};
        let coll = self.database().await.collection::<Document>(table);
        let mut cursor =
            coll.find(mongodb::bson::doc! {}).sort(mongodb::bson::doc! {"time": 1}).await.unwrap();
        let mut out = Vec::new();
        while cursor.advance().await.unwrap() {
            let d = cursor.deserialize_current().unwrap();
            let meta = d.get_document("meta").unwrap();
            let mut values: BTreeMap<String, Val> = meta
                .iter()
                .filter(|(k, _)| *k != "device")
                .map(|(k, v)| (k.to_ascii_lowercase(), Val::Str(v.as_str().unwrap().to_owned())))
                .collect();
            for (k, v) in d.iter().filter(|(k, _)| !matches!(k.as_str(), "_id" | "time" | "meta")) {
                let val = match v {
                    Bson::Int64(i) => Val::Int(*i),
                    Bson::Int32(i) => Val::Int(i64::from(*i)),
                    Bson::Double(f) => Val::Float(*f),
                    Bson::Boolean(b) => Val::Bool(*b),
                    Bson::String(s) => Val::Str(s.clone()),
                    other => panic!("unexpected {other:?} in {table}.{k}"),
                };
                values.insert(k.to_ascii_lowercase(), val);
            }
            out.push(Row {
                time: d.get_datetime("time").unwrap().timestamp_millis() * 1_000_000,
                device: meta.get_str("device").unwrap().to_owned(),
                values,
            });
        }
        out
    }
    async fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .database()
            .await
            .list_collection_names()
            .await
            .unwrap()
            .into_iter()
            .filter(|n| !n.starts_with("system."))
            .collect();
        t.sort();
        t
    }
    async fn create_foreign_table(&self, _: &str) {
        unreachable!("MongoDB is schemaless")
    }
    async fn refuse_duplicate_times(&self, table: &str) {
        let db = self.database().await;
        db.create_collection(table).await.unwrap();
        let index = mongodb::IndexModel::builder()
            .keys(mongodb::bson::doc! {"meta.device": 1, "time": 1})
            .options(
                mongodb::options::IndexOptions::builder()
                    .unique(true)
                    .name("device_time_unique".to_owned())
                    .build(),
            )
            .build();
        db.collection::<mongodb::bson::Document>(table).create_index(index).await.unwrap();
    }
}
