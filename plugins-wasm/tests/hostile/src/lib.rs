//! Misbehaves on request, so Roost's tests can check each limit against a real component.
//!
//! `init` fails or traps when the config says `init-error` / `init-trap`. `process` reads the
//! payload: `loop` spins forever, `bomb` allocates until memory runs out, `big` returns 100 MB
//! of strings, `many` returns 12,000 records, `panic` panics, `exit` exits, `refuse` returns an
//! error, `log` logs a line, anything else gives one record `{"n": <payload length>}`.
use roost_processor::{Error, Message, Processor, Record};

#[derive(Default)]
struct Hostile;

impl Processor for Hostile {
    fn init(&mut self, config: &str) -> Result<(), String> {
        match config {
            "init-error" => Err("config says no".into()),
            "init-trap" => panic!("init was told to trap"),
            _ => Ok(()),
        }
    }

    fn process(&mut self, msg: &Message) -> Result<Vec<Record>, Error> {
        let record = || Record::new("hostile", msg);
        match &msg.payload[..] {
            b"loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            b"bomb" => {
                // Asks for memory without touching it: the cap, not the CPU budget, stops it.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(16 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            b"big" => Ok((0..100).map(|i| record().field(format!("f{i}"), "x".repeat(1 << 20))).collect()),
            b"many" => Ok((0..12_000).map(|i| record().field("i", i as i64)).collect()),
            b"panic" => panic!("told to panic"),
            b"exit" => std::process::exit(3),
            b"refuse" => Err("refused on request".into()),
            b"log" => {
                roost_processor::log::info("hello from the guest");
                Ok(vec![record().field("logged", true)])
            }
            other => Ok(vec![record().field("n", other.len() as i64)]),
        }
    }
}

roost_processor::export!(Hostile);
