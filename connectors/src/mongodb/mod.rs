//! The `mongodb` sink: MongoDB (and MongoDB-wire servers) through the `mongodb` crate. One
//! collection per measurement (time-series when `timeseries = true` and the server accepts it,
//! otherwise a plain collection indexed on `(meta.device, time)`), documents
//! `{_id, time, meta: {device, tags...}, fields...}` ([`schema`]), one unordered `insert_many`
//! per collection per batch; a document the server refuses is rejected alone ([`sink`]).

mod config;
mod export;
pub mod schema;
mod sink;

pub use config::MongoConfig;
pub use export::MongoSource;
pub use sink::MongoSink;
