//! Field math: every field whose name ends in `_c` (or is `temperature`) is converted from degrees
//! Celsius to Fahrenheit and stored as `<name>_f`; other fields pass through.
//!
//! `{"temperature": 21.5, "humidity": 40}` -> `temperature_f = 70.7, humidity = 40`.
use roost_processor::{Error, FieldValue, Message, Processor, Record};

#[derive(Default)]
struct CelsiusToFahrenheit;

fn is_celsius(name: &str) -> bool {
    name == "temperature" || name.ends_with("_c")
}

impl Processor for CelsiusToFahrenheit {
    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
        let mut record = Record::new(msg.topic_measurement(), msg).json_fields(&msg.json()?);
        for (name, value) in &mut record.fields {
            let celsius = match value {
                FieldValue::Float(c) => *c,
                FieldValue::Int(c) => *c as f64,
                _ => continue,
            };
            if is_celsius(name) {
                *name = format!("{}_f", name.trim_end_matches("_c"));
                *value = FieldValue::Float(celsius * 9.0 / 5.0 + 32.0);
            }
        }
        Ok(vec![record])
    }
}

roost_processor::export!(CelsiusToFahrenheit);
