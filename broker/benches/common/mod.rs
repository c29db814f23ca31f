//! What the benchmarks share: the real `roost` (release build) started by the test kit on free
//! ports with a temporary data directory, its warnings on the terminal.

use std::path::Path;

use roost_testkit::{Launch, Roost};

/// Starts `roost serve` on free ports in `dir`, with `config` as its config file if given.
pub fn start(dir: &Path, config: Option<&str>) -> Roost {
    Launch::new(env!("CARGO_BIN_EXE_roost")).config(config).log_to_stderr().start(dir)
}
