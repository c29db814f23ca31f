//! The WebAssembly host against real components: the Rust and Python examples, a module that
//! misbehaves on request (plugins-wasm/tests/hostile), and hand-written WAT for files that are
//! not processors at all.

use std::sync::Arc;
use std::time::Duration;

use roost_core::{FieldValue, Message, Record};
use roost_processors::wasm::{
    Limits, LoadError, ModuleError, Registry, RegistryError, Runtime, WasmProcessor,
};
use roost_processors::{ProcessError, Processor};
use roost_testkit::examples;

fn msg(topic: &str, payload: &str) -> Message {
    Message {
        topic: topic.into(),
        client_id: "client-1".into(),
        device: topic.split('/').nth(1).unwrap_or("client-1").into(),
        payload: payload.as_bytes().to_vec(),
        received_at: 1_700_000_000_000_000_000,
        qos: 1,
        retain: false,
        user_properties: vec![],
    }
}

fn runtime() -> Arc<Runtime> {
    Runtime::new(Limits::default()).unwrap()
}

fn module(rt: &Runtime, name: &str) -> Arc<roost_processors::wasm::Module> {
    let component = rt.compile(&examples::read(&examples::rust(name))).unwrap();
    rt.link(&component, name, 1).unwrap()
}

fn process(p: &mut dyn Processor, m: &Message) -> Result<Vec<Record>, ProcessError> {
    let mut out = Vec::new();
    p.process(m, &mut out).map(|()| out)
}

fn float(r: &Record, f: &str) -> f64 {
    match r.fields.get(f) {
        Some(FieldValue::Float(v)) => *v,
        other => panic!("field {f}: {other:?} in {r:?}"),
    }
}

#[test]
fn celsius_to_fahrenheit_converts_fields() {
    let rt = runtime();
    let mut p = WasmProcessor::pinned(module(&rt, "celsius-to-fahrenheit"), "");
    let out =
        process(&mut p, &msg("devices/d1/env", r#"{"temperature": 21.5, "humidity": 40, "probe_c": -40}"#))
            .unwrap();
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!((r.measurement.as_str(), r.device.as_str(), r.time), ("env", "d1", 1_700_000_000_000_000_000));
    assert!((float(r, "temperature_f") - 70.7).abs() < 1e-9, "{r:?}");
    assert_eq!(float(r, "probe_f"), -40.0);
    assert_eq!(r.fields.get("humidity"), Some(&FieldValue::Int(40)));
    assert!(!r.fields.contains_key("temperature"));
    // Not JSON: the module's own error, with its name and version.
    let err = process(&mut p, &msg("devices/d1/env", "not json")).unwrap_err();
    assert!(err.to_string().starts_with("processor celsius-to-fahrenheit v1: payload is not JSON"), "{err}");
}

#[test]
fn threshold_filter_drops_and_reads_its_config() {
    let rt = runtime();
    let m = module(&rt, "threshold-filter");
    let mut p = WasmProcessor::pinned(m.clone(), "25");
    assert!(process(&mut p, &msg("devices/d1/power", r#"{"value": 24.9}"#)).unwrap().is_empty());
    assert_eq!(process(&mut p, &msg("devices/d1/power", r#"{"value": 25}"#)).unwrap().len(), 1);
    let err = m.instantiate("twenty").err().expect("a bad config is refused");
    assert!(matches!(&err, ModuleError::Init(why) if why.contains("\"twenty\" is not a number")), "{err}");
}

#[test]
fn split_array_fans_out_with_each_readings_time() {
    let rt = runtime();
    let mut p = WasmProcessor::pinned(module(&rt, "split-array"), "");
    let payload = r#"{"readings": [{"ts": 1700000000000, "t": 1.5}, {"ts": 1700000001000, "t": 2.5}, {"ts": 1700000002000, "t": 3.5}]}"#;
    let out = process(&mut p, &msg("devices/d7/env", payload)).unwrap();
    let got: Vec<(i64, f64)> = out.iter().map(|r| (r.time, float(r, "t"))).collect();
    assert_eq!(
        got,
        [
            (1_700_000_000_000_000_000, 1.5),
            (1_700_000_001_000_000_000, 2.5),
            (1_700_000_002_000_000_000, 3.5)
        ]
    );
}

/// The older platform's shape, through the Rust port and the Python port: the same records.
#[test]
fn myt_compat_in_rust_and_python_agree() {
    let rt = runtime();
    let payload = r#"{"measurement": "climate", "sensor": "greenhouse-3", "data": {"temp": 215, "hum": 40.5, "debug": "x", "ok": true}}"#;
    let m = msg("myt/in", payload);
    let mut rust = WasmProcessor::pinned(module(&rt, "myt-compat"), "");
    let python_component = rt.compile(&examples::read(&examples::python("myt_compat"))).unwrap();
    let mut python = WasmProcessor::pinned(rt.link(&python_component, "myt-compat-py", 1).unwrap(), "");
    let from_rust = process(&mut rust, &m).unwrap();
    let from_python = process(&mut python, &m).unwrap();
    assert_eq!(from_rust, from_python);
    let r = &from_rust[0];
    assert_eq!((r.measurement.as_str(), r.device.as_str()), ("climate", "greenhouse-3"));
    assert_eq!(float(r, "temp"), 21.5);
    assert_eq!(r.fields.get("ok"), Some(&FieldValue::Bool(true)));
    assert!(!r.fields.contains_key("debug"));
    // A Python exception reaches the dead-letter reason.
    let err = process(&mut python, &msg("myt/in", r#"{"measurement": "x"}"#)).unwrap_err();
    assert!(err.to_string().contains("KeyError"), "{err}");
}

fn hostile(limits: Limits) -> (Arc<Runtime>, WasmProcessor) {
    let rt = Runtime::new(limits).unwrap();
    let m = module(&rt, "hostile");
    (rt, WasmProcessor::pinned(m, ""))
}

fn expect_failure(p: &mut WasmProcessor, payload: &str, says: &str) {
    let err = process(p, &msg("devices/d1/x", payload)).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("processor hostile v1: ") && text.contains(says), "{payload}: {text}");
    // The pipeline goes on: the next message gets a (fresh) instance.
    let ok = process(p, &msg("devices/d1/x", "fine")).unwrap();
    assert_eq!(ok[0].fields.get("n"), Some(&FieldValue::Int(4)), "after {payload}");
}

#[test]
fn an_infinite_loop_runs_out_of_cpu_budget() {
    let (_rt, mut p) = hostile(Limits { cpu_budget: Duration::from_millis(20), ..Limits::default() });
    expect_failure(&mut p, "loop", "ran past its CPU budget of 20ms");
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    // A CPU budget far away, so the memory cap is what stops it on a slow machine.
    let (_rt, mut p) = hostile(Limits { cpu_budget: Duration::from_secs(30), ..Limits::default() });
    expect_failure(&mut p, "bomb", "tried to grow memory past the cap of 64 MiB");
}

#[test]
fn a_100_mb_output_is_refused() {
    // Under the default 64 MiB memory cap the module cannot even build it...
    let slow_ok = Duration::from_secs(30);
    let (_rt, mut p) = hostile(Limits { cpu_budget: slow_ok, ..Limits::default() });
    expect_failure(&mut p, "big", "memory past the cap");
    // ...and with room to build it, the output cap refuses it.
    let (_rt, mut p) = hostile(Limits { memory_bytes: 512 << 20, cpu_budget: slow_ok, ..Limits::default() });
    expect_failure(
        &mut p,
        "big",
        "output over the cap: 104859590 bytes of records for one message (the cap is 4194304)",
    );
    let (_rt, mut p) = hostile(Limits { cpu_budget: slow_ok, memory_bytes: 512 << 20, ..Limits::default() });
    expect_failure(&mut p, "many", "output over the cap: 12000 records for one message (the cap is 10000)");
}

#[test]
fn a_panic_exit_or_refusal_fails_only_that_message() {
    let (_rt, mut p) = hostile(Limits::default());
    expect_failure(&mut p, "panic", "told to panic");
    expect_failure(&mut p, "exit", "called exit (failure)");
    expect_failure(&mut p, "refuse", "refused on request");
    let out = process(&mut p, &msg("devices/d1/x", "log")).unwrap();
    assert_eq!(out[0].fields.get("logged"), Some(&FieldValue::Bool(true)));
}

#[test]
fn a_trap_in_init_is_reported_and_not_retried_per_message() {
    let rt = runtime();
    let m = module(&rt, "hostile");
    let err = m.instantiate("init-trap").err().unwrap();
    assert!(
        err.to_string().contains("init trapped") && err.to_string().contains("init was told to trap"),
        "{err}"
    );
    let mut p = WasmProcessor::pinned(m.clone(), "init-trap");
    for _ in 0..roost_processors::wasm::FAILING_AFTER {
        let err = process(&mut p, &msg("devices/d1/x", "fine")).unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err}");
    }
    // One real attempt, then the backoff answers without instantiating again: still failing.
    assert!(m.stats.summary().failing);
}

fn load_err(bytes: &[u8]) -> LoadError {
    runtime().compile(bytes).expect_err("refused")
}

#[test]
fn files_that_are_not_processors_are_refused_precisely() {
    assert!(matches!(load_err(b"hello, not wasm"), LoadError::NotWasm));
    let core = wat::parse_str("(module (func (export \"process\")))").unwrap();
    assert!(matches!(load_err(&core), LoadError::CoreModule));
    assert!(matches!(load_err(b"\0asm\x0d\0\x01\0garbage"), LoadError::Invalid(_)));
    for (import, says) in [
        ("wasi:filesystem/preopens@0.2.0", "no file system"),
        ("wasi:sockets/tcp@0.2.0", "no network"),
        ("wasi:clocks/wall-clock@0.2.0", "no clock"),
    ] {
        let wat = format!("(component (import \"{import}\" (instance)))");
        match load_err(&wat::parse_str(&wat).unwrap()) {
            LoadError::ForbiddenImport(why) => assert!(why.contains(import) && why.contains(says), "{why}"),
            other => panic!("{import}: {other}"),
        }
    }
    let v2 = wat::parse_str("(component (import \"roost:processor/log@0.2.0\" (instance)))").unwrap();
    let err = load_err(&v2);
    assert!(matches!(err, LoadError::UnsupportedVersion(ref v) if v == "0.2.0"), "{err}");
    assert!(err.to_string().contains("roost:processor@0.2.0"));
}

#[test]
fn the_wrong_world_is_refused_at_link() {
    let rt = runtime();
    let empty = rt.compile(&wat::parse_str("(component)").unwrap()).unwrap();
    let err = rt.link(&empty, "empty", 1).err().unwrap();
    assert!(matches!(err, LoadError::WrongWorld(_)), "{err}");
    assert!(err.to_string().contains("init"), "{err}");
}

#[test]
fn registry_versions_rollback_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let registry = Registry::open(dir.path(), rt.clone()).unwrap();
    let slot = registry.slot("conv");
    let mut p = WasmProcessor::following(slot.clone(), "");
    assert!(matches!(process(&mut p, &msg("devices/d1/env", "{}")), Err(ProcessError::NotLoaded(_))));

    let c2f = examples::read(&examples::rust("celsius-to-fahrenheit"));
    let pass = examples::read(&examples::rust("passthrough"));
    let samples = [msg("devices/d1/env", r#"{"temperature": 100}"#)];
    let v1 = registry.upload("conv", &c2f, &[], &samples).unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.samples[0].records.as_ref().unwrap()[0]["fields"]["temperature_f"], 212.0);
    let out = process(&mut p, &samples[0]).unwrap();
    assert!(out[0].fields.contains_key("temperature_f"));

    let v2 = registry.upload("conv", &pass, &[], &[]).unwrap();
    assert_eq!(v2.version, 2);
    let out = process(&mut p, &samples[0]).unwrap();
    assert!(out[0].fields.contains_key("temperature"), "the next message runs v2: {out:?}");

    // A failing sample refuses the upload and leaves v2 active.
    let bad = [msg("devices/d1/env", "not json")];
    let err = registry.upload("conv", &c2f, &[], &bad).unwrap_err();
    assert!(matches!(&err, RegistryError::Samples { failed: 1, total: 1, .. }), "{err}");
    assert_eq!(registry.info("conv").unwrap().active, Some(2));

    assert_eq!(registry.rollback("conv", None).unwrap(), 1);
    assert!(process(&mut p, &samples[0]).unwrap()[0].fields.contains_key("temperature_f"));
    assert!(matches!(registry.rollback("conv", None), Err(RegistryError::NoEarlier(_))));
    assert_eq!(registry.rollback("conv", Some(2)).unwrap(), 2);
    let info = registry.info("conv").unwrap();
    assert_eq!(info.versions.len(), 2);
    assert_eq!(info.versions[1].calls.calls, 1);

    // A restart loads the active version from its compiled form.
    drop(registry);
    assert!(dir.path().join("conv/2.cwasm").exists());
    let registry = Registry::open(dir.path(), rt).unwrap();
    let mut p = WasmProcessor::following(registry.slot("conv"), "");
    assert!(process(&mut p, &samples[0]).unwrap()[0].fields.contains_key("temperature"));
    registry.delete("conv").unwrap();
    assert!(matches!(process(&mut p, &samples[0]), Err(ProcessError::NotLoaded(_))));
    assert!(registry.list().is_empty());
    assert!(!dir.path().join("conv").exists());
}
