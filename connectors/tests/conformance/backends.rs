//! One backend per real database: it gives each test its own namespace (a file, a schema, a
//! database), opens sinks on it, and reads rows back through the database's own client.
#![allow(async_fn_in_trait)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use roost_connectors::{Sink, SinkContext};
use roost_core::{FieldValue, Record};
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

pub trait Backend {
    fn kind(&self) -> &'static str;
    fn options(&self) -> Value;
    /// The database's address, and the options that reach it through `proxy` instead.
    fn via_proxy(&self, proxy: SocketAddr) -> (SocketAddr, Value);
    /// The smallest time step the database keeps, in ns.
    fn time_precision_ns(&self) -> i64;
    /// true: the typed SQL schema policy; false: SQLite's dynamic typing (values keep their type).
    fn typed(&self) -> bool;
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
    /// Tables in the namespace, lower-cased and sorted.
    async fn tables(&self) -> Vec<String>;
    /// Creates a table with a layout Roost did not make.
    async fn create_foreign_table(&self, table: &str);

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

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn env_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `make test` (or `bash scripts/services.sh` and source its env file)")
    })
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
    async fn create_foreign_table(&self, table: &str) {
        let conn = rusqlite::Connection::open(&self.file).unwrap();
        conn.execute_batch(&format!("CREATE TABLE \"{table}\" (id INTEGER PRIMARY KEY, v TEXT)")).unwrap();
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
    async fn create_foreign_table(&self, table: &str) {
        let sql = format!("CREATE TABLE \"{}\".\"{table}\" (id serial PRIMARY KEY, v text)", self.schema);
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
    async fn create_foreign_table(&self, table: &str) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn().await;
        conn.query_drop(format!("CREATE TABLE `{table}` (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
    }
}
