//! Running a panel's or variable's query, once Grafana's variables and macros are expanded, on
//! the real database of each datasource kind, as rows of named values.

use mongodb::bson::{Bson, Document};
use serde_json::{json, Map, Value};

use roost_testkit::influxdb;

pub type Row = Map<String, Value>;

/// A connection to one sink's database.
pub enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
    Influx { url: String, db: String },
    Mongo(mongodb::Database),
}

impl Db {
    pub async fn postgres(url: &str) -> Db {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        Db::Postgres(client)
    }

    pub async fn mysql(url: &str) -> Db {
        use mysql_async::prelude::Queryable;
        let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
        // As Grafana's MySQL datasource does: its macros are in UTC.
        conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
        Db::Mysql(conn)
    }

    /// Runs `query` (on `collection`, for MongoDB); panics with the query on an error.
    pub async fn rows(&mut self, query: &str, collection: &str) -> Vec<Row> {
        match self {
            Db::Sqlite(path) => sqlite(path, query),
            Db::Postgres(client) => {
                let mut rows = Vec::new();
                for msg in client.simple_query(query).await.unwrap_or_else(|e| panic!("{query}: {e}")) {
                    if let tokio_postgres::SimpleQueryMessage::Row(r) = msg {
                        let mut row = Row::new();
                        for (i, c) in r.columns().iter().enumerate() {
                            row.insert(c.name().into(), r.get(i).map_or(Value::Null, |s| json!(s)));
                        }
                        rows.push(row);
                    }
                }
                rows
            }
            Db::Mysql(conn) => {
                use mysql_async::prelude::Queryable;
                let result: Vec<mysql_async::Row> =
                    conn.query(query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
                result
                    .iter()
                    .map(|r| {
                        r.columns_ref()
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.name_str().into_owned(), mysql_value(r.as_ref(i).unwrap())))
                            .collect()
                    })
                    .collect()
            }
            Db::Influx { url, db } => {
                let answer = influxdb::query(url, db, query, Some("s")).await;
                let result = &answer["results"][0];
                assert!(result.get("error").is_none() && answer.get("error").is_none(), "{query}: {answer}");
                let mut rows = Vec::new();
                for series in result["series"].as_array().into_iter().flatten() {
                    let columns: Vec<&str> =
                        series["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
                    for values in series["values"].as_array().unwrap() {
                        let mut row: Row = series["tags"].as_object().cloned().unwrap_or_default();
                        for (c, v) in columns.iter().zip(values.as_array().unwrap()) {
                            row.insert((*c).into(), v.clone());
                        }
                        rows.push(row);
                    }
                }
                rows
            }
            Db::Mongo(db) => {
                let pipeline: Value = serde_json::from_str(query).unwrap_or_else(|e| panic!("{query}: {e}"));
                let stages: Vec<Document> = match Bson::try_from(pipeline).unwrap() {
                    Bson::Array(a) => a.into_iter().map(|s| s.as_document().unwrap().clone()).collect(),
                    other => panic!("not a pipeline: {other}"),
                };
                let mut cursor = db
                    .collection::<Document>(collection)
                    .aggregate(stages)
                    .await
                    .unwrap_or_else(|e| panic!("{query}: {e}"));
                let mut rows = Vec::new();
                while cursor.advance().await.unwrap() {
                    let doc = cursor.deserialize_current().unwrap();
                    rows.push(doc.into_iter().map(|(k, v)| (k, bson_value(v))).collect());
                }
                rows
            }
        }
    }
}

fn sqlite(path: &std::path::Path, query: &str) -> Vec<Row> {
    use rusqlite::types::ValueRef;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        let mut row = Row::new();
        for (i, name) in names.iter().enumerate() {
            let v = match r.get_ref(i).unwrap() {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => json!(n),
                ValueRef::Real(f) => json!(f),
                ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                ValueRef::Blob(_) => json!("<blob>"),
            };
            row.insert(name.clone(), v);
        }
        out.push(row);
    }
    out
}

fn mysql_value(v: &mysql_async::Value) -> Value {
    use mysql_async::Value as V;
    match v {
        V::NULL => Value::Null,
        V::Bytes(b) => json!(String::from_utf8_lossy(b)),
        V::Int(n) => json!(n),
        V::UInt(n) => json!(n),
        V::Float(f) => json!(f),
        V::Double(f) => json!(f),
        other => json!(other.as_sql(true)),
    }
}

/// Dates as milliseconds; documents flattened to JSON.
fn bson_value(b: Bson) -> Value {
    match b {
        Bson::DateTime(d) => json!(d.timestamp_millis()),
        Bson::Double(f) => json!(f),
        Bson::Int32(n) => json!(n),
        Bson::Int64(n) => json!(n),
        Bson::String(s) => json!(s),
        Bson::Boolean(b) => json!(b),
        Bson::Null => Value::Null,
        Bson::Document(d) => Value::Object(d.into_iter().map(|(k, v)| (k, bson_value(v))).collect()),
        Bson::Array(a) => Value::Array(a.into_iter().map(bson_value).collect()),
        other => json!(other.to_string()),
    }
}

/// A number, from a number or the text of one (PostgreSQL's simple protocol and MySQL's
/// decimals answer in text).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
