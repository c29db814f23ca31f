//! The `sqlite` sink, Roost's embedded default: one file, WAL mode, one transaction per batch,
//! a table per measurement (`time`, `device`, then a column per tag and field, added as they
//! appear).

mod config;
mod export;
mod schema;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{SqliteConfig, Synchronous};
pub use export::SqliteSource;
pub use sink::SqliteSink;
