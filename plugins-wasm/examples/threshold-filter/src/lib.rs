//! Drops messages: only readings whose `value` is at or above a threshold are stored.
//!
//! The pipeline's `config` sets the threshold (`config = "25.0"`); the default is 0.
use roost_processor::{Error, Message, Processor, Record};

#[derive(Default)]
struct ThresholdFilter {
    threshold: f64,
}

impl Processor for ThresholdFilter {
    fn init(&mut self, config: &str) -> Result<(), String> {
        if !config.trim().is_empty() {
            self.threshold =
                config.trim().parse().map_err(|e| format!("config {config:?} is not a number: {e}"))?;
        }
        Ok(())
    }

    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
        let json = msg.json()?;
        let value = json["value"].as_f64().ok_or("no number \"value\"")?;
        if value < self.threshold {
            return Ok(Vec::new());
        }
        Ok(vec![Record::new(msg.topic_measurement(), msg).json_fields(&json)])
    }
}

roost_processor::export!(ThresholdFilter);
