//! One message, many records: a board that buffers readings sends them as one array,
//! `{"readings": [{"ts": 1700000000000, "t": 21.5}, ...]}` (`ts` in milliseconds), and each
//! reading becomes its own record at its own time.
use roost_processor::{Error, Message, Processor, Record};

#[derive(Default)]
struct SplitArray;

impl Processor for SplitArray {
    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
        let json = msg.json()?;
        let readings = json["readings"].as_array().ok_or("no array \"readings\"")?;
        readings
            .iter()
            .enumerate()
            .map(|(i, reading)| {
                let mut reading = reading.clone();
                let ts = reading
                    .as_object_mut()
                    .ok_or(format!("readings[{i}] is not an object"))?
                    .remove("ts")
                    .and_then(|ts| ts.as_i64())
                    .ok_or(format!("readings[{i}] has no integer \"ts\""))?;
                Ok(Record::new(msg.topic_measurement(), msg).at(ts * 1_000_000).json_fields(&reading))
            })
            .collect()
    }
}

roost_processor::export!(SplitArray);
