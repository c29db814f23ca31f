//! The `influxdb` sink: InfluxDB 1.x/2.x/3.x and VictoriaMetrics over HTTP, in line protocol.
//! Records are encoded by our own encoder ([`schema`]: escaping, types, what is refused), sent
//! gzipped in requests under a size limit through the v1 (`/write?db=`) or v2
//! (`/api/v2/write?org=&bucket=`) API, and the server's answer is mapped line by line
//! ([`sink`]). Schemaless: the device is the tag `device`, tags are tags, fields are fields.

mod config;
mod export;
pub mod schema;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{Api, InfluxConfig, StringFields};
pub use export::InfluxSource;
pub use sink::InfluxSink;
