//! Reading a MongoDB sink's collections back (`roost export`): collections of the sink's
//! database whose names start with its `collection_prefix` are measurements. Documents are
//! read with a driver cursor (pages of [`PAGE`]) sorted by time (`allowDiskUse`, so the server
//! never sorts in memory past its limit); each becomes a row: `time` (milliseconds: what BSON
//! dates keep), `meta.device`, the other `meta` keys (tags) and the top-level fields with their
//! BSON types (64- and 32-bit integers as integers, doubles as floats, booleans, strings).
//!
//! A CSV header needs the column names before the rows: they are collected by reading the
//! matching documents once, keeping only the distinct names.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;
use roost_core::FieldValue;

use super::config::MongoConfig;
use crate::export::{unprefixed, ExportError, Names, OpenSource, Precision, Query, Row, Rows, Source};
use crate::names::{DEVICE, TIME};
use crate::{SinkConfig, SinkContext};

/// Documents per page the server sends.
const PAGE: u32 = 1000;

/// Reads one MongoDB database.
pub struct MongoSource {
    client: Client,
    database: String,
    prefix: String,
}

#[async_trait]
impl OpenSource for MongoConfig {
    async fn open_source(
        &self,
        _kind: &'static str,
        _ctx: &SinkContext,
    ) -> Result<Box<dyn Source>, ExportError> {
        self.validate().map_err(|e| ExportError::Config(e.to_string()))?;
        let mut options = ClientOptions::parse(&self.url)
            .await
            .map_err(|e| ExportError::Config(format!("mongodb sink: url: {}", e.kind)))?;
        options.app_name.get_or_insert_with(|| "roost-export".into());
        options.server_selection_timeout.get_or_insert(Duration::from_secs(10));
        let client = Client::with_options(options)
            .map_err(|e| ExportError::Config(format!("mongodb sink: client: {}", e.kind)))?;
        let source =
            MongoSource { client, database: self.database.clone(), prefix: self.collection_prefix.clone() };
        source.client.database(&source.database).run_command(doc! {"ping": 1}).await.map_err(|e| {
            ExportError::Unavailable(format!("mongodb sink: cannot reach the server: {}", e.kind))
        })?;
        Ok(Box::new(source))
    }
}

fn failed(e: &mongodb::error::Error) -> ExportError {
    ExportError::Unavailable(format!("mongodb sink: {}", e.kind))
}

impl MongoSource {
    fn collection(&self, measurement: &str) -> mongodb::Collection<Document> {
        self.client.database(&self.database).collection(&format!("{}{measurement}", self.prefix))
    }
}

/// The filter for `query`'s devices and times (BSON dates: milliseconds).
fn filter(query: &Query) -> Document {
    let mut filter = Document::new();
    let mut time = Document::new();
    if let Some(ms) = query.from_in(1_000_000) {
        time.insert("$gte", DateTime::from_millis(ms));
    }
    if let Some(ms) = query.to_in(1_000_000) {
        time.insert("$lt", DateTime::from_millis(ms));
    }
    if !time.is_empty() {
        filter.insert(TIME, time);
    }
    if !query.devices.is_empty() {
        filter.insert("meta.device", doc! {"$in": query.devices.clone()});
    }
    filter
}

#[async_trait]
impl Source for MongoSource {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn precision(&self) -> Precision {
        Precision::Millis
    }

    async fn measurements(&mut self) -> Result<Vec<String>, ExportError> {
        let names =
            self.client.database(&self.database).list_collection_names().await.map_err(|e| failed(&e))?;
        let mut out = unprefixed(names.iter().filter(|n| !n.starts_with("system.")), &self.prefix);
        out.sort();
        Ok(out)
    }

    /// The tags (`meta` keys but the device), then the fields, each sorted.
    async fn columns(&mut self, measurement: &str, query: &Query) -> Result<Vec<String>, ExportError> {
        let mut tags = BTreeSet::new();
        let mut fields = BTreeSet::new();
        let mut cursor = self
            .collection(measurement)
            .find(filter(query))
            .batch_size(PAGE)
            .await
            .map_err(|e| failed(&e))?;
        while let Some(d) = cursor.try_next().await.map_err(|e| failed(&e))? {
            if let Ok(meta) = d.get_document("meta") {
                for k in meta.keys().filter(|k| *k != DEVICE) {
                    if !tags.contains(k) {
                        tags.insert(k.clone());
                    }
                }
            }
            for k in d.keys().filter(|k| !matches!(k.as_str(), "_id" | "meta" | TIME)) {
                if !fields.contains(k) {
                    fields.insert(k.clone());
                }
            }
        }
        let mut out: Vec<String> = tags.into_iter().collect();
        out.extend(fields.into_iter().filter(|f| !out.contains(f)).collect::<Vec<_>>());
        Ok(out)
    }

    async fn rows<'a>(&'a mut self, measurement: &str, query: &Query) -> Result<Rows<'a>, ExportError> {
        let cursor = self
            .collection(measurement)
            .find(filter(query))
            .sort(doc! {TIME: 1, "meta.device": 1})
            .allow_disk_use(true)
            .batch_size(PAGE)
            .await
            .map_err(|e| failed(&e))?;
        let mut names = Names::default();
        Ok(cursor.map(move |d| d.map_err(|e| failed(&e)).map(|d| row(d, &mut names))).boxed())
    }
}

/// A document as a row.
fn row(d: Document, names: &mut Names) -> Row {
    let mut row = Row { time: 0, device: String::new(), values: Vec::new() };
    for (k, v) in d {
        match k.as_str() {
            "_id" => {}
            TIME => {
                if let Bson::DateTime(t) = v {
                    row.time = t.timestamp_millis().saturating_mul(1_000_000);
                }
            }
            "meta" => {
                if let Bson::Document(meta) = v {
                    for (tag, value) in meta {
                        match (tag.as_str(), value) {
                            (DEVICE, Bson::String(d)) => row.device = d,
                            (_, Bson::String(s)) => row.values.push((names.get(&tag), FieldValue::Str(s))),
                            (_, Bson::Null) => {}
                            (_, other) => {
                                row.values.push((names.get(&tag), FieldValue::Str(other.to_string())))
                            }
                        }
                    }
                }
            }
            _ => {
                let value = match v {
                    Bson::Int64(i) => FieldValue::Int(i),
                    Bson::Int32(i) => FieldValue::Int(i.into()),
                    Bson::Double(f) => FieldValue::Float(f),
                    Bson::Boolean(b) => FieldValue::Bool(b),
                    Bson::String(s) => FieldValue::Str(s),
                    Bson::Null => continue,
                    other => FieldValue::Str(other.into_relaxed_extjson().to_string()),
                };
                row.values.push((names.get(&k), value));
            }
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_becomes_a_row_with_typed_values() {
        let d = doc! {"_id": 1, "time": DateTime::from_millis(1_500), "meta": {"device": "d1", "site": "lab"},
        "i": 7_i64, "f": 2.5, "ok": true, "s": "x"};
        let r = row(d, &mut Names::default());
        assert_eq!((r.time, r.device.as_str()), (1_500_000_000, "d1"));
        let values: Vec<(String, FieldValue)> =
            r.values.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(
            values,
            [
                ("site".into(), FieldValue::Str("lab".into())),
                ("i".into(), FieldValue::Int(7)),
                ("f".into(), FieldValue::Float(2.5)),
                ("ok".into(), FieldValue::Bool(true)),
                ("s".into(), FieldValue::Str("x".into())),
            ]
        );
    }

    #[test]
    fn times_round_up_to_milliseconds() {
        let q = Query { from: Some(1_500_001), devices: vec!["a".into()], ..Query::default() };
        let f = filter(&q);
        assert_eq!(f.get_document("time").unwrap().get_datetime("$gte").unwrap().timestamp_millis(), 2);
    }
}
