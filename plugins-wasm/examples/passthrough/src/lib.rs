//! Stores each JSON message as one record, the way Roost's built-in mapping does: the
//! measurement from the topic (`devices/{device}/{measurement}`), the fields from the object.
use roost_processor::{Error, Message, Processor, Record};

#[derive(Default)]
struct Passthrough;

impl Processor for Passthrough {
    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
        let json = msg.json()?;
        Ok(vec![Record::new(msg.topic_measurement(), msg).json_fields(&json)])
    }
}

roost_processor::export!(Passthrough);
