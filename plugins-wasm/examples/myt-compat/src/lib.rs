//! The older platform's per-message script, ported.
//!
//! Its devices publish `{"measurement": "env", "sensor": "greenhouse-3", "data": {...}}` and a
//! user's Python script `main(data) -> data` ran on each message. This one is the typical script
//! of that platform, line for line:
//!
//! ```python
//! def main(data):
//!     d = data["data"]
//!     if "temp" in d:                      # the boards send tenths of a degree
//!         d["temp"] = d["temp"] / 10.0
//!     d.pop("debug", None)                 # never stored
//!     return data
//! ```
//!
//! The record: measurement `measurement`, device `sensor`, fields from `data`.
use roost_processor::{Error, Message, Processor, Record};

#[derive(Default)]
struct MytCompat;

impl Processor for MytCompat {
    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
        let mut json = msg.json()?;
        let measurement = json["measurement"].as_str().ok_or("no string \"measurement\"")?.to_string();
        let sensor = json["sensor"].as_str().unwrap_or(&msg.device).to_string();
        let data = json["data"].as_object_mut().ok_or("no object \"data\"")?;
        if let Some(temp) = data.get("temp").and_then(|t| t.as_f64()) {
            data.insert("temp".into(), (temp / 10.0).into());
        }
        data.remove("debug");
        Ok(vec![Record::new(measurement, msg).device(sensor).json_fields(&json["data"])])
    }
}

roost_processor::export!(MytCompat);
