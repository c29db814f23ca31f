//! The `postgres` and `timescaledb` sinks: PostgreSQL (and TimescaleDB, which is PostgreSQL with
//! an extension) through `tokio-postgres` and a `deadpool-postgres` pool. A table per measurement
//! with typed columns (the schema policy in [`crate::sql`]), an index on `(device, time DESC)`, a
//! hypertable when the `timescaledb` extension is present; batches written in one transaction by
//! binary `COPY` (default) or multi-row `INSERT` with bound parameters.

mod config;
mod export;
mod schema;
mod sink;

pub use config::{Hypertable, PostgresConfig, WriteMethod};
pub use export::PostgresSource;
pub use sink::PostgresSink;
