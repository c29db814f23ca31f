//! What Roost's tests and benchmarks share, so that no test file carries its own copy: the live
//! services' URLs from the `ROOST_TEST_*` variables ([`env_url`]), names no other run uses
//! ([`unique`]), free ports ([`free_port`]), a real `roost serve` on free ports ([`Roost`],
//! started through [`Launch`]), the example processors built from `plugins-wasm/`
//! ([`examples`]), reading back what InfluxDB and VictoriaMetrics hold ([`influxdb`],
//! [`victoria`]), a PostgreSQL server of a test's own that it can stop and start
//! ([`postgres`]), and for the fault tests a QoS 1 publisher that records every PUBACK
//! ([`publisher`]) and a database proxy that can be switched off ([`proxy`]).
//!
//! A dev-dependency only, and it never depends on the broker crate: a caller passes the binary
//! cargo built for it, `env!("CARGO_BIN_EXE_roost")`.

pub mod examples;
pub mod influxdb;
pub mod postgres;
pub mod proxy;
pub mod publisher;
mod roost;
pub mod victoria;

use std::sync::atomic::{AtomicU32, Ordering};

pub use roost::{signal, Launch, Roost};

/// The value of `var`, a live service that `make test` and `make bench` set up and name in the
/// environment (`ROOST_TEST_POSTGRES_URL`, `ROOST_TEST_INFLUXDB_URL`, ...).
///
/// # Panics
///
/// When `var` is not set, saying how to set it: a live test fails rather than skips, so in CI
/// (which sets them all) no live test is silently left out.
pub fn env_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `make test` (or `bash scripts/services.sh` and source its env file)")
    })
}

/// A name no other test, process or earlier run uses: `prefix`, the process id, a counter and the
/// clock's nanoseconds, joined by `_` (`e2e_4711_0_123456789`). A valid SQL, InfluxDB and MongoDB
/// name whenever `prefix` is one, for the databases, schemas and measurement prefixes that live
/// tests create on shared servers.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A TCP port of 127.0.0.1 that was free a moment ago (bound to port 0, then released), for a
/// server that must be told its port, or for an address where nothing listens.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// POSTs `form` to `url` of a live service (`server` names it in the panic when it does not
/// answer) and returns the response, for the read-back helpers.
async fn post_form(server: &str, url: String, form: &[(&str, &str)]) -> reqwest::Response {
    let sent = reqwest::Client::new().post(&url).form(form).send().await;
    sent.unwrap_or_else(|e| panic!("{server} at {url}: {e}"))
}
