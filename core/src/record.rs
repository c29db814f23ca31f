//! The record model: one time-stamped row of a measurement, as sinks store it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One field value. Sinks map each variant to a column type of their database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    /// The name of the variant's type, as used in error messages and docs.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Int(_) => "integer",
            FieldValue::Float(_) => "float",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Str(_) => "string",
        }
    }
}

/// A record: what a processor produces and a sink writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The measurement; SQL sinks use it as the table name.
    pub measurement: String,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    /// The device the record is about.
    pub device: String,
    /// Indexed string labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The values.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldValue>,
}

impl Record {
    /// A record with no tags and no fields yet.
    pub fn new(measurement: impl Into<String>, device: impl Into<String>, time: i64) -> Self {
        Record {
            measurement: measurement.into(),
            time,
            device: device.into(),
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }
}
