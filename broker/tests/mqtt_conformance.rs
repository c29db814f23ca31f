//! The MQTT conformance suite (`conformance/`, issue 15): paho-mqtt tests named after the normative
//! statements of MQTT 3.1.1 and 5 they check, run by `conformance/run.py` against a fresh Mosquitto
//! and against this `roost`, each on free loopback ports and configured alike. It fails if a test
//! that passes on Mosquitto does not pass on Roost, unless `conformance/known_differences.toml`
//! lists it with a reason. The Python environment (paho-mqtt, pytest) and the `mosquitto` binary
//! come from `scripts/services.sh` (`make test`), which exports the interpreter as
//! `ROOST_TEST_CONFORMANCE_PYTHON`.

use std::path::PathBuf;
use std::process::Command;

/// The conformance venv's Python; a test without it fails (never skips).
fn python() -> PathBuf {
    match std::env::var_os("ROOST_TEST_CONFORMANCE_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "ROOST_TEST_CONFORMANCE_PYTHON is not set: run `make services` (or `bash scripts/services.sh` \
             and load ${{ROOST_SVC_DIR:-/tmp/roost-svc}}/env), which installs mosquitto and the \
             conformance suite's Python packages"
        ),
    }
}

#[test]
fn roost_passes_every_conformance_test_mosquitto_passes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/run.py");
    let out = Command::new(python())
        .arg(script)
        .arg("--compare")
        .arg("--roost-bin")
        .arg(env!("CARGO_BIN_EXE_roost"))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "conformance/run.py --compare exited with {}: a test that passes on Mosquitto does not pass on \
         Roost (marked REGRESSION in the table printed above), or a broker did not start",
        out.status
    );
}
