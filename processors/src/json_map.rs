//! The built-in JSON mapping: a JSON object payload becomes one record.
//!
//! - Numbers and booleans become fields, strings become string fields, nested objects flatten
//!   with `_` (`{"a":{"b":1}}` -> `a_b`), arrays flatten by index (`{"v":[1,2]}` -> `v_0`, `v_1`),
//!   `null` means "no value" and adds no field.
//! - A top-level `time` (or else `ts`) key sets the record's time: a number in seconds,
//!   milliseconds, microseconds or nanoseconds since the epoch (told apart by magnitude), or an
//!   RFC 3339 string. Without one the record takes the time the broker received the message.
//! - The measurement is a top-level string `measurement` key if there is one, else the topic's
//!   part after `devices/{device}/` (`/` replaced by `_`), else the topic's last level.
//! - The device is the envelope's device (`devices/{device}/...`, else the MQTT client id).
//! - The older platform's shape `{"measurement": m, "sensor": s, "data": {...}}` maps to
//!   measurement `m`, device `s`, fields from `data`, so existing devices keep working unchanged.
//!
//! Anything else (not JSON, not an object, an invalid or reserved field name, an oversized string,
//! no fields at all) is a [`MappingError`] naming what is wrong.

use roost_core::{ident, topic, FieldValue, Message, Record};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::{ProcessError, Processor};

/// Names the mapping keeps for the record's own columns.
const RESERVED: [&str; 2] = ["time", "device"];

/// Limits that keep one hostile payload from costing more than it should.
#[derive(Debug, Clone)]
pub struct MappingLimits {
    /// Longest string field value, in bytes.
    pub max_string_len: usize,
    /// Most fields one message may produce.
    pub max_fields: usize,
    /// Deepest nesting of objects and arrays.
    pub max_depth: usize,
}

impl Default for MappingLimits {
    fn default() -> Self {
        MappingLimits { max_string_len: 16 * 1024, max_fields: 1000, max_depth: 16 }
    }
}

/// Why a payload could not be mapped.
#[derive(Debug, Error, PartialEq)]
pub enum MappingError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload is JSON but not an object (found {0})")]
    NotObject(&'static str),
    #[error("payload has no fields")]
    NoFields,
    #[error("field name {name:?} is not valid: {reason}")]
    BadFieldName { name: String, reason: String },
    #[error("field name {0:?} is reserved for the record's own column")]
    ReservedField(String),
    #[error("measurement {name:?} is not valid: {reason}")]
    BadMeasurement { name: String, reason: String },
    #[error("string field {name:?} is {len} bytes, over the {max}-byte limit")]
    StringTooLong { name: String, len: usize, max: usize },
    #[error("payload has more than {0} fields")]
    TooManyFields(usize),
    #[error("payload nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("time {0} is not a valid timestamp (a number since the epoch or an RFC 3339 string)")]
    BadTime(String),
    #[error("{key:?} must be a string in the measurement/sensor/data shape")]
    BadLegacyShape { key: &'static str },
}

/// The built-in JSON mapping processor.
#[derive(Debug, Clone, Default)]
pub struct JsonMapping {
    limits: MappingLimits,
}

impl JsonMapping {
    pub fn new(limits: MappingLimits) -> Self {
        JsonMapping { limits }
    }

    /// Maps one message to its record.
    pub fn map(&self, msg: &Message) -> Result<Record, MappingError> {
        let value: Value =
            serde_json::from_slice(&msg.payload).map_err(|e| MappingError::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(MappingError::NotObject(json_type(&value)));
        };

        let time_value = take_time(&mut obj);
        let (measurement, device, mut data) = match legacy_shape(&mut obj)? {
            Some(legacy) => legacy,
            None => {
                let measurement = match obj.remove("measurement") {
                    Some(Value::String(m)) => m,
                    Some(other) => {
                        obj.insert("measurement".into(), other);
                        measurement_from_topic(&msg.topic)
                    }
                    None => measurement_from_topic(&msg.topic),
                };
                (measurement, msg.device.clone(), obj)
            }
        };
        // The older shape may carry its time inside `data`.
        let time_value = time_value.or_else(|| take_time(&mut data));
        let time = match time_value {
            Some(v) => parse_time(&v)?,
            None => msg.received_at,
        };

        if let Err(e) = ident::validate(&measurement) {
            return Err(MappingError::BadMeasurement { name: measurement, reason: e.to_string() });
        }
        let mut record = Record::new(measurement, device, time);
        let mut name = String::new();
        for (key, value) in &data {
            name.clear();
            name.push_str(key);
            self.flatten(&mut name, value, 1, &mut record)?;
        }
        if record.fields.is_empty() {
            return Err(MappingError::NoFields);
        }
        Ok(record)
    }

    fn flatten(
        &self,
        name: &mut String,
        value: &Value,
        depth: usize,
        record: &mut Record,
    ) -> Result<(), MappingError> {
        if depth > self.limits.max_depth {
            return Err(MappingError::TooDeep(self.limits.max_depth));
        }
        let field = match value {
            Value::Null => return Ok(()),
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::Int(i),
                None => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => {
                if s.len() > self.limits.max_string_len {
                    return Err(MappingError::StringTooLong {
                        name: name.clone(),
                        len: s.len(),
                        max: self.limits.max_string_len,
                    });
                }
                FieldValue::Str(s.clone())
            }
            Value::Object(map) => return self.flatten_children(name, map.iter(), depth, record),
            Value::Array(items) => {
                let indexed = items.iter().enumerate().map(|(i, v)| (i.to_string(), v));
                return self.flatten_children(name, indexed, depth, record);
            }
        };
        if let Err(e) = ident::validate(name) {
            return Err(MappingError::BadFieldName { name: name.clone(), reason: e.to_string() });
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(MappingError::ReservedField(name.clone()));
        }
        if record.fields.len() >= self.limits.max_fields {
            return Err(MappingError::TooManyFields(self.limits.max_fields));
        }
        record.fields.insert(name.clone(), field);
        Ok(())
    }

    fn flatten_children<'a, K: AsRef<str>>(
        &self,
        name: &mut String,
        children: impl Iterator<Item = (K, &'a Value)>,
        depth: usize,
        record: &mut Record,
    ) -> Result<(), MappingError> {
        let base = name.len();
        for (key, child) in children {
            name.truncate(base);
            name.push('_');
            name.push_str(key.as_ref());
            self.flatten(name, child, depth + 1, record)?;
        }
        name.truncate(base);
        Ok(())
    }
}

impl Processor for JsonMapping {
    fn name(&self) -> &str {
        "json"
    }

    fn process(&mut self, msg: &Message, out: &mut Vec<Record>) -> Result<(), ProcessError> {
        out.push(self.map(msg)?);
        Ok(())
    }
}

/// Takes the top-level `time`, else `ts`, out of `obj`.
fn take_time(obj: &mut Map<String, Value>) -> Option<Value> {
    obj.remove("time").or_else(|| obj.remove("ts"))
}

/// Recognises `{"measurement": m, "sensor": s, "data": {...}}` and takes it apart.
#[allow(clippy::type_complexity)]
fn legacy_shape(
    obj: &mut Map<String, Value>,
) -> Result<Option<(String, String, Map<String, Value>)>, MappingError> {
    let is_legacy = matches!(obj.get("data"), Some(Value::Object(_)))
        && obj.contains_key("measurement")
        && obj.contains_key("sensor");
    if !is_legacy {
        return Ok(None);
    }
    let measurement = match obj.remove("measurement") {
        Some(Value::String(m)) => m,
        _ => return Err(MappingError::BadLegacyShape { key: "measurement" }),
    };
    let sensor = match obj.remove("sensor") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(MappingError::BadLegacyShape { key: "sensor" }),
    };
    let Some(Value::Object(mut data)) = obj.remove("data") else {
        unreachable!("checked above");
    };
    // Any other top-level keys are fields too: nothing the device sent is dropped.
    for (k, v) in std::mem::take(obj) {
        data.entry(k).or_insert(v);
    }
    Ok(Some((measurement, sensor, data)))
}

/// The measurement a topic implies when the payload names none.
fn measurement_from_topic(t: &str) -> String {
    match topic::device_topic(t) {
        Some((_, Some(m))) => m.replace('/', "_"),
        Some((_, None)) => "telemetry".to_owned(),
        None => t.rsplit('/').next().unwrap_or(t).to_owned(),
    }
}

/// Parses a JSON time: a number since the epoch (unit told by magnitude) or RFC 3339 text.
fn parse_time(v: &Value) -> Result<i64, MappingError> {
    let bad = || MappingError::BadTime(v.to_string());
    match v {
        Value::Number(n) => {
            let x = n.as_f64().ok_or_else(bad)?;
            if !x.is_finite() || x < 0.0 {
                return Err(bad());
            }
            let scale = if x < 1e11 {
                1e9 // seconds (until year 5138)
            } else if x < 1e14 {
                1e6 // milliseconds
            } else if x < 1e17 {
                1e3 // microseconds
            } else {
                1.0 // nanoseconds
            };
            // Integers stay exact; floats are rounded to the nanosecond.
            match (n.as_i64(), scale as i64) {
                (Some(i), s) => i.checked_mul(s).ok_or_else(bad),
                (None, _) => {
                    let ns = (x * scale).round();
                    if ns > i64::MAX as f64 {
                        Err(bad())
                    } else {
                        Ok(ns as i64)
                    }
                }
            }
        }
        Value::String(s) => {
            let t = humantime::parse_rfc3339_weak(s).map_err(|_| bad())?;
            let d = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?;
            i64::try_from(d.as_nanos()).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &str) -> Message {
        let device = topic::device_topic(topic).map(|(d, _)| d).unwrap_or("client-1");
        Message {
            topic: topic.into(),
            client_id: "client-1".into(),
            device: device.into(),
            payload: payload.as_bytes().to_vec(),
            received_at: 1_700_000_000_000_000_000,
            qos: 1,
            retain: false,
            user_properties: vec![],
        }
    }

    fn map(topic: &str, payload: &str) -> Result<Record, MappingError> {
        JsonMapping::default().map(&msg(topic, payload))
    }

    #[test]
    fn flat_payload_on_the_device_topic() {
        let r = map("devices/d1/env", r#"{"t":21.5,"n":3,"ok":true,"s":"hi"}"#).unwrap();
        assert_eq!(r.measurement, "env");
        assert_eq!(r.device, "d1");
        assert_eq!(r.time, 1_700_000_000_000_000_000);
        assert_eq!(r.fields["t"], FieldValue::Float(21.5));
        assert_eq!(r.fields["n"], FieldValue::Int(3));
        assert_eq!(r.fields["ok"], FieldValue::Bool(true));
        assert_eq!(r.fields["s"], FieldValue::Str("hi".into()));
    }

    #[test]
    fn nested_objects_and_arrays_flatten() {
        let r = map("devices/d1/env", r#"{"a":{"b":1,"c":{"d":2}},"v":[5,6],"z":null}"#).unwrap();
        let names: Vec<&str> = r.fields.keys().map(String::as_str).collect();
        assert_eq!(names, ["a_b", "a_c_d", "v_0", "v_1"]);
    }

    #[test]
    fn time_keys_in_every_unit() {
        let want = 1_700_000_000_000_000_000;
        for t in ["1700000000", "1700000000000", "1700000000000000", "1700000000000000000"] {
            let r = map("devices/d/m", &format!(r#"{{"time":{t},"x":1}}"#)).unwrap();
            assert_eq!(r.time, want, "{t}");
            assert!(!r.fields.contains_key("time"));
        }
        let r = map("devices/d/m", r#"{"ts":1700000000.5,"x":1}"#).unwrap();
        assert_eq!(r.time, want + 500_000_000);
        let r = map("devices/d/m", r#"{"time":"2023-11-14T22:13:20Z","x":1}"#).unwrap();
        assert_eq!(r.time, want);
        assert!(matches!(map("devices/d/m", r#"{"time":"soon","x":1}"#), Err(MappingError::BadTime(_))));
        assert!(matches!(map("devices/d/m", r#"{"time":-5,"x":1}"#), Err(MappingError::BadTime(_))));
    }

    #[test]
    fn older_platform_shape_keeps_working() {
        let r = map(
            "myt/data",
            r#"{"measurement":"weather","sensor":"station-7","data":{"temp":3.5,"wind":{"speed":12}}}"#,
        )
        .unwrap();
        assert_eq!(r.measurement, "weather");
        assert_eq!(r.device, "station-7");
        assert_eq!(r.fields["temp"], FieldValue::Float(3.5));
        assert_eq!(r.fields["wind_speed"], FieldValue::Int(12));
        assert!(matches!(
            map("x", r#"{"measurement":5,"sensor":"s","data":{"a":1}}"#),
            Err(MappingError::BadLegacyShape { key: "measurement" })
        ));
    }

    #[test]
    fn measurement_key_and_free_topics() {
        assert_eq!(map("devices/d1/env", r#"{"measurement":"power","w":1}"#).unwrap().measurement, "power");
        assert_eq!(map("plant/line3/speed", r#"{"v":1}"#).unwrap().measurement, "speed");
        assert_eq!(map("plant/line3/speed", r#"{"v":1}"#).unwrap().device, "client-1");
        assert_eq!(map("devices/d1/env/in", r#"{"v":1}"#).unwrap().measurement, "env_in");
        assert_eq!(map("devices/d1", r#"{"v":1}"#).unwrap().measurement, "telemetry");
        assert!(matches!(map("a/b c", r#"{"v":1}"#), Err(MappingError::BadMeasurement { .. })));
    }

    #[test]
    fn malformed_payloads_are_precise_errors() {
        assert!(matches!(map("devices/d/m", "not json"), Err(MappingError::NotJson(_))));
        assert_eq!(map("devices/d/m", "[1,2]"), Err(MappingError::NotObject("an array")));
        assert_eq!(map("devices/d/m", "42"), Err(MappingError::NotObject("a number")));
        assert_eq!(map("devices/d/m", "{}"), Err(MappingError::NoFields));
        assert_eq!(map("devices/d/m", r#"{"z":null}"#), Err(MappingError::NoFields));
        assert!(matches!(
            map("devices/d/m", r#"{"a\"; DROP TABLE x":1}"#),
            Err(MappingError::BadFieldName { .. })
        ));
        assert_eq!(
            map("devices/d/m", r#"{"device":"x"}"#),
            Err(MappingError::ReservedField("device".into()))
        );
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(1 << 20));
        assert!(
            matches!(map("devices/d/m", &big), Err(MappingError::StringTooLong { len, .. }) if len == 1 << 20)
        );
        let deep = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
        assert_eq!(map("devices/d/m", &deep), Err(MappingError::TooDeep(16)));
        let many: Vec<String> = (0..1001).map(|i| format!(r#""f{i}":1"#)).collect();
        assert_eq!(
            map("devices/d/m", &format!("{{{}}}", many.join(","))),
            Err(MappingError::TooManyFields(1000))
        );
    }
}
