//! The `mysql` sink: MySQL and MariaDB through `mysql_async`. A table per measurement with typed
//! columns (the schema policy in [`crate::sql`]; `time DATETIME(6)` in UTC, `device
//! VARCHAR(255)`, an index on `(device, time)`), batches written in one transaction as multi-row
//! prepared `INSERT`s sized under the server's `max_allowed_packet`.

mod config;
mod export;
mod schema;
mod sink;

pub use config::MysqlConfig;
pub use export::MysqlSource;
pub use sink::MysqlSink;
