//! `make bench`: what a processor costs per message, next to the built-in JSON mapping.
//!
//! One thread, one reused instance per processor (as a pipeline worker has), the same 100-byte
//! JSON payload as the end-to-end benchmark. Prints µs per message and the extra over the
//! mapping for the passthrough and celsius-to-fahrenheit examples (release builds of both the
//! host and the modules). `ROOST_BENCH_MESSAGES` sets the count (default 200000).

use std::time::Instant;

use roost_core::{Message, Record};
use roost_processors::wasm::{Limits, Runtime, WasmProcessor};
use roost_processors::{JsonMapping, Processor};
use roost_testkit::examples;

fn message(seq: u64) -> Message {
    let mut p =
        format!(r#"{{"seq":{seq},"client":1,"temp":21.53,"hum":40.2,"pressure":1013.25,"ok":true,"label":""#);
    while p.len() < 98 {
        p.push('x');
    }
    p.push_str("\"}");
    Message {
        topic: "devices/bench-1/env".into(),
        client_id: "bench-1".into(),
        device: "bench-1".into(),
        payload: p.into_bytes(),
        received_at: 1_700_000_000_000_000_000,
        qos: 1,
        retain: false,
        user_properties: vec![],
    }
}

/// µs per message over `messages`, after a warm-up.
fn measure(p: &mut dyn Processor, messages: &[Message]) -> f64 {
    let mut out: Vec<Record> = Vec::with_capacity(16);
    for m in messages.iter().take(1000) {
        p.process(m, &mut out).unwrap();
        out.clear();
    }
    let started = Instant::now();
    for m in messages {
        p.process(m, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        out.clear();
    }
    started.elapsed().as_secs_f64() * 1e6 / messages.len() as f64
}

fn main() {
    let n: u64 = std::env::var("ROOST_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let messages: Vec<Message> = (0..n).map(message).collect();
    let runtime = Runtime::new(Limits::default()).unwrap();
    let module = |name: &str| {
        let component = runtime.compile(&examples::read(&examples::rust(name))).unwrap();
        runtime.link(&component, name, 1).unwrap()
    };
    println!("processor cost per message: {n} messages of 100-byte JSON, one thread, reused instance");
    let mapping = measure(&mut JsonMapping::default(), &messages);
    println!("built-in JSON mapping            {mapping:>7.2} µs/msg");
    for name in ["passthrough", "celsius-to-fahrenheit"] {
        let mut p = WasmProcessor::pinned(module(name), "");
        let us = measure(&mut p, &messages);
        println!("wasm {name:<27} {us:>7.2} µs/msg  (+{:.2} µs over the mapping; target <= 5)", us - mapping);
    }
}
