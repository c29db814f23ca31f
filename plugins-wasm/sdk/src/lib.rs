//! Write Roost processors in Rust.
//!
//! A processor turns one MQTT message into zero or more records. Implement [`Processor`] for a
//! type and hand it to [`export!`]; build with `cargo build --release` for `wasm32-wasip2`, and
//! upload the `.wasm` file with `roost processor upload NAME FILE`.
//!
//! ```ignore
//! use roost_processor::{Error, Message, Processor, Record};
//!
//! #[derive(Default)]
//! struct Fahrenheit;
//!
//! impl Processor for Fahrenheit {
//!     fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
//!         let json = msg.json()?;
//!         let celsius = json["t"].as_f64().ok_or("no number \"t\"")?;
//!         Ok(vec![Record::new("env", msg).field("t_f", celsius * 9.0 / 5.0 + 32.0)])
//!     }
//! }
//!
//! roost_processor::export!(Fahrenheit);
//! ```

extern crate self as roost_processor;

use std::cell::RefCell;

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "processor",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "::roost_processor::__bindings",
        runtime_path: "::roost_processor::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use __bindings::roost::processor::types::{FieldValue, Message, ProcessingError, Record};
pub use serde_json;

/// The error a processor returns for a message: the message goes to Roost's dead-letter store
/// with this text (and the processor's name and version).
pub type Error = ProcessingError;

/// What a processor implements. One value lives per instance, across messages; Roost may run
/// several instances (one per worker thread) and replace an instance after a failure, so keep
/// no state that must be shared between messages.
pub trait Processor: Default + 'static {
    /// Called once per instance, before the first message, with the pipeline's `config` string
    /// (empty when none is set). An error refuses the module.
    fn init(&mut self, config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Turns one message into records: none drops the message, several fan it out.
    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error>;
}

/// Exports a [`Processor`] type as the component's `processor` world.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        const _: () = {
            struct RoostGuest;

            impl $crate::__bindings::Guest for RoostGuest {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__init::<$ty>(&config)
                }

                fn process(
                    msg: $crate::Message,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Record>, $crate::Error> {
                    $crate::__process::<$ty>(&msg)
                }
            }

    $crate::__bindings::__export_world!(RoostGuest with_types_in $crate::__bindings);
        };
    };
}

thread_local! {
    static STATE: RefCell<Option<Box<dyn std::any::Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn __init<P: Processor>(config: &str) -> Result<(), String> {
    let mut processor = P::default();
    processor.init(config)?;
    STATE.with(|state| *state.borrow_mut() = Some(Box::new(processor)));
    Ok(())
}

#[doc(hidden)]
pub fn __process<P: Processor>(msg: &Message) -> Result<Vec<Record>, Error> {
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let processor = state
            .get_or_insert_with(|| Box::new(P::default()))
            .downcast_mut::<P>()
            .expect("one processor type per module");
        processor.process(msg)
    })
}

impl Message {
    /// The payload parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.payload).map_err(|e| Error::from(format!("payload is not JSON: {e}")))
    }

    /// The measurement named by the topic: `env` for `devices/d1/env`, else the topic's last level.
    pub fn topic_measurement(&self) -> &str {
        let mut levels = self.topic.split('/');
        match (levels.next(), levels.next(), levels.next()) {
            (Some("devices"), Some(_), Some(measurement)) => measurement,
            _ => self.topic.rsplit('/').next().unwrap_or(&self.topic),
        }
    }

    /// The value of the first MQTT 5 user property named `key`.
    pub fn user_property(&self, key: &str) -> Option<&str> {
        self.user_properties.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Record {
    /// An empty record for `msg`'s device at the time the message was received.
    pub fn new(measurement: impl Into<String>, msg: &Message) -> Self {
        Record {
            measurement: measurement.into(),
            time: msg.received_at,
            device: msg.device.clone(),
            tags: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((name.into(), value.into()));
        self
    }

    /// Sets the time, in nanoseconds since the Unix epoch.
    pub fn at(mut self, time_ns: i64) -> Self {
        self.time = time_ns;
        self
    }

    /// Sets the device.
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// Adds the fields of a JSON object the way Roost's built-in mapping does: numbers, booleans
    /// and strings become fields, nested objects flatten with `_`, arrays by index, nulls are
    /// skipped.
    pub fn json_fields(mut self, object: &serde_json::Value) -> Self {
        flatten("", object, &mut self.fields);
        self
    }
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, FieldValue)>) {
    use serde_json::Value;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}_{k}")
        }
    };
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| flatten(&key(&i.to_string()), v, out))
        }
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.to_string(), FieldValue::Boolean(*b))),
        Value::Number(n) => out.push((prefix.to_string(), number(n))),
        Value::String(s) => out.push((prefix.to_string(), FieldValue::Str(s.clone()))),
    }
}

fn number(n: &serde_json::Number) -> FieldValue {
    match n.as_i64() {
        Some(i) => FieldValue::Int(i),
        None => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

impl From<String> for ProcessingError {
    fn from(message: String) -> Self {
        ProcessingError { message }
    }
}

impl From<&str> for ProcessingError {
    fn from(message: &str) -> Self {
        ProcessingError { message: message.to_string() }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Boolean(v)
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_string())
    }
}

/// Lines in Roost's log, tagged with the processor's name.
pub mod log {
    use super::__bindings::roost::processor::log::{log, Level};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}
