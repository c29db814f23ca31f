//! The `Sink` impl for MongoDB: documents built off the async threads, one unordered
//! `insert_many` per collection per batch.
//!
//! A write error on one document (a duplicate in a unique index, a validator refusing it)
//! rejects that record alone; the server went on with the others. A duplicate `_id` means the
//! same record is already stored (a retry of a batch that was partly written), so it counts as
//! written. Errors that say the server is away or stepping down make the whole batch
//! [`SinkError::Unavailable`]: writing it again is idempotent on plain collections, where `_id`
//! is unique (MongoDB does not enforce a unique `_id` in time-series collections). A collection
//! the server refuses for good ([`PERMANENT_CODES`]: an invalid namespace, a key too long)
//! rejects that collection's records; failed authentication or a missing privilege is
//! [`SinkError::Config`]; any other error counts as "later".

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ClientOptions, TimeseriesOptions};
use mongodb::{Client, IndexModel};
use roost_core::Record;
use tracing::{debug, info, warn};

use super::config::MongoConfig;
use super::schema::document;
use crate::{names, OpenSink, Position, Rejected, Sink, SinkConfig, SinkContext, SinkError, WriteOutcome};

/// Server error codes that mean "try again later", not "this document is refused".
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Server error codes that mean the same request will be refused again: the data or the
/// collection is at fault, so its records are rejected, never retried.
const PERMANENT_CODES: &[i32] = &[
    2,     // BadValue
    9,     // FailedToParse
    14,    // TypeMismatch
    52,    // DollarPrefixedFieldName
    55,    // InvalidDBRef
    56,    // EmptyFieldName
    57,    // DottedFieldName
    67,    // CannotCreateIndex
    73,    // InvalidNamespace
    85,    // IndexOptionsConflict
    86,    // IndexKeySpecsConflict
    10334, // BSONObjectTooLarge
    17280, // KeyTooLong
];

/// Writes batches to one MongoDB database.
pub struct MongoSink {
    config: MongoConfig,
    client: Client,
    /// Collections this sink created or found.
    known: HashSet<String>,
}

/// One collection's share of a batch.
struct Group {
    collection: String,
    docs: Vec<Document>,
    /// The batch index of each document.
    indices: Vec<usize>,
}

#[async_trait]
impl OpenSink for MongoSink {
    type Config = MongoConfig;

    /// Builds the client; connecting happens on the first write.
    async fn open(config: MongoConfig, _kind: &'static str, _ctx: &SinkContext) -> Result<Self, SinkError> {
        config.validate()?;
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(|e| SinkError::Config(format!("mongodb sink: url: {}", e.kind)))?;
        options.app_name.get_or_insert_with(|| "roost".into());
        options.server_selection_timeout.get_or_insert(Duration::from_secs(10));
        let client = Client::with_options(options)
            .map_err(|e| SinkError::Config(format!("mongodb sink: client: {}", e.kind)))?;
        Ok(MongoSink { config, client, known: HashSet::new() })
    }
}

impl MongoSink {
    /// Creates `name` unless this sink has seen it: time-series if asked and accepted, and the
    /// `(meta.device, time)` index.
    async fn ensure_collection(&mut self, name: &str) -> Result<(), MongoError> {
        if self.known.contains(name) {
            return Ok(());
        }
        let db = self.client.database(&self.config.database);
        let exists = !db.list_collection_names().filter(doc! {"name": name}).await?.is_empty();
        if !exists {
            let mut made = false;
            if self.config.timeseries {
                let ts = TimeseriesOptions::builder()
                    .time_field(names::TIME.to_owned())
                    .meta_field(Some("meta".to_owned()))
                    .build();
                match db.create_collection(name).timeseries(ts).await {
                    Ok(()) => made = true,
                    Err(e) if code(&e) == Some(48) => made = true, // NamespaceExists: another writer
                    Err(e) if is_transient(&e) => return Err(e),
                    Err(e) => warn!(
                        sink = "mongodb",
                        collection = name,
                        error = %e.kind,
                        "the server refused a time-series collection; making a plain one"
                    ),
                }
            }
            if !made {
                match db.create_collection(name).await {
                    Ok(()) => {}
                    Err(e) if code(&e) == Some(48) => {}
                    Err(e) => return Err(e),
                }
            }
            info!(
                sink = "mongodb",
                collection = name,
                timeseries = self.config.timeseries && made,
                "collection created"
            );
        }
        let index = IndexModel::builder().keys(doc! {"meta.device": 1, "time": 1}).build();
        if let Err(e) = db.collection::<Document>(name).create_index(index).await {
            if is_transient(&e) {
                return Err(e);
            }
            warn!(sink = "mongodb", collection = name, error = %e.kind, "could not create the (meta.device, time) index");
        }
        self.known.insert(name.to_owned());
        Ok(())
    }
}

/// Documents for every record that passes the name rule, grouped by collection. With `keys`
/// (a [`Position`]), each document's `_id` is the string `"{stream}:{id}"` of its record's id.
fn encode(batch: &[Record], prefix: &str, keys: Option<&Position>) -> (Vec<Group>, Vec<Rejected>) {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut rejected = Vec::new();
    for (index, r) in batch.iter().enumerate() {
        match names::check_record(r).and_then(|()| document(r)) {
            Ok(mut doc) => {
                if let Some(p) = keys {
                    doc.insert("_id", format!("{}:{}", p.stream, p.ids[index]));
                }
                let collection = format!("{prefix}{}", r.measurement);
                let g = groups.entry(collection.clone()).or_insert_with(|| Group {
                    collection,
                    docs: Vec::new(),
                    indices: Vec::new(),
                });
                g.docs.push(doc);
                g.indices.push(index);
            }
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    (groups.into_values().collect(), rejected)
}

#[async_trait]
impl Sink for MongoSink {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn write(&mut self, batch: Arc<Vec<Record>>) -> Result<WriteOutcome, SinkError> {
        self.write_keyed(batch, None).await
    }

    /// Writes the batch with each document's `_id` made from the stream and its record's id:
    /// a replay of the batch finds its `_id`s taken and counts those records as written. On a
    /// time-series collection `_id` is not unique, so a replay stores them again.
    async fn write_at(
        &mut self,
        batch: Arc<Vec<Record>>,
        position: &Position,
    ) -> Result<WriteOutcome, SinkError> {
        if position.ids.len() != batch.len() {
            return Err(SinkError::Config(format!(
                "mongodb sink: {} ids for a batch of {} records (stream {:?}, seq {})",
                position.ids.len(),
                batch.len(),
                position.stream,
                position.seq
            )));
        }
        self.write_keyed(batch, Some(position.clone())).await
    }

    fn replay_safety(&self) -> &'static str {
        if self.config.timeseries {
            "none"
        } else {
            "keys"
        }
    }
}

impl MongoSink {
    async fn write_keyed(
        &mut self,
        batch: Arc<Vec<Record>>,
        keys: Option<Position>,
    ) -> Result<WriteOutcome, SinkError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let started = Instant::now();
        let prefix = self.config.collection_prefix.clone();
        let b = batch.clone();
        let (groups, mut rejected) = tokio::task::spawn_blocking(move || encode(&b, &prefix, keys.as_ref()))
            .await
            .map_err(|e| SinkError::Unavailable(format!("mongodb sink: encode task: {e}")))?;
        let db = self.client.database(&self.config.database);
        for g in groups {
            if let Err(e) = self.ensure_collection(&g.collection).await {
                refuse_collection(e, &g.collection, &g.indices, &mut rejected)?;
                continue;
            }
            let coll = db.collection::<Document>(&g.collection);
            let ids: Vec<Bson> = g.docs.iter().map(|d| d.get("_id").cloned().unwrap_or(Bson::Null)).collect();
            let result = coll.insert_many(g.docs).ordered(false).await;
            let Err(e) = result else { continue };
            let ErrorKind::InsertMany(ime) = e.kind.as_ref() else {
                refuse_collection(e, &g.collection, &g.indices, &mut rejected)?;
                continue;
            };
            if let Some(wce) = &ime.write_concern_error {
                return Err(SinkError::Unavailable(format!(
                    "mongodb sink: write concern not satisfied: {} ({})",
                    wce.message, wce.code
                )));
            }
            // Duplicates on another unique index may still be our own documents, stored by an
            // earlier attempt at this batch: those with their `_id` already there count as written.
            let mut dup_ids = Vec::new();
            for we in ime.write_errors.iter().flatten() {
                if TRANSIENT_CODES.contains(&we.code) {
                    return Err(SinkError::Unavailable(format!(
                        "mongodb sink: {} ({})",
                        we.message, we.code
                    )));
                }
                if we.index >= g.indices.len() {
                    return Err(SinkError::Unavailable(format!(
                        "mongodb sink: a write error names document {} of {}",
                        we.index,
                        g.indices.len()
                    )));
                }
                if we.code == 11000 && !we.message.contains("index: _id_ ") {
                    dup_ids.push(ids[we.index].clone());
                }
            }
            let stored: Vec<Bson> = if dup_ids.is_empty() {
                Vec::new()
            } else {
                let mut cursor = coll
                    .find(doc! {"_id": {"$in": dup_ids}})
                    .projection(doc! {"_id": 1})
                    .await
                    .map_err(|e| failed(&e))?;
                let mut stored = Vec::new();
                while cursor.advance().await.map_err(|e| failed(&e))? {
                    if let Ok(d) = cursor.deserialize_current() {
                        stored.extend(d.get("_id").cloned());
                    }
                }
                stored
            };
            for we in ime.write_errors.iter().flatten() {
                let id_stored = stored.contains(&ids[we.index]);
                if we.code == 11000 && (we.message.contains("index: _id_ ") || id_stored) {
                    continue; // already stored by an earlier attempt
                }
                rejected.push(Rejected {
                    index: g.indices[we.index],
                    reason: format!("{} (code {})", we.message, we.code),
                });
            }
        }
        rejected.sort_by_key(|r| r.index);
        let written = batch.len() - rejected.len();
        debug!(
            sink = "mongodb",
            records = batch.len(),
            written,
            rejected = rejected.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch written"
        );
        Ok(WriteOutcome { written, rejected })
    }
}

/// The server's error code, when the error came from the server.
fn code(e: &MongoError) -> Option<i32> {
    use mongodb::error::WriteFailure;
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

fn is_transient(e: &MongoError) -> bool {
    matches!(
        e.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::Shutdown
    ) || e.contains_label("NetworkError")
        || e.contains_label("RetryableWriteError")
        || code(e).is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// A failed operation: a configuration problem (credentials, permissions, an option the driver
/// refuses), a refusal the server will repeat ([`PERMANENT_CODES`]), or "later": connection
/// errors, timeouts, elections and any error not known to be permanent.
fn failed(e: &MongoError) -> SinkError {
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. } => SinkError::Config(format!(
            "mongodb sink: authentication failed: {}; check the url's credentials",
            e.kind
        )),
        _ if code(e) == Some(13) => SinkError::Config(format!(
            "mongodb sink: not authorized: {}; grant the url's user readWrite on the database",
            e.kind
        )),
        ErrorKind::InvalidArgument { .. }
        | ErrorKind::BsonSerialization(_)
        | ErrorKind::InvalidTlsConfig { .. } => SinkError::Config(format!("mongodb sink: {}", e.kind)),
        _ if is_permanent(e) => SinkError::Config(format!("mongodb sink: {}", e.kind)),
        _ => SinkError::Unavailable(format!("mongodb sink: {}", e.kind)),
    }
}

/// Whether the server refused for good, in a way that concerns the data or the collection,
/// not the whole sink (credentials).
fn is_permanent(e: &MongoError) -> bool {
    !is_transient(e) && code(e).is_some_and(|c| PERMANENT_CODES.contains(&c))
}

/// An operation on one collection failed: if the server refused it for good ([`is_permanent`]),
/// the group's records are rejected with its reason and the others written; otherwise the
/// batch fails ([`failed`]).
fn refuse_collection(
    e: MongoError,
    collection: &str,
    indices: &[usize],
    rejected: &mut Vec<Rejected>,
) -> Result<(), SinkError> {
    if !is_permanent(&e) {
        return Err(failed(&e));
    }
    let reason = format!("mongodb sink: collection {collection:?}: {}", e.kind);
    warn!(sink = "mongodb", collection, error = %e.kind, "the server refused a collection's records");
    rejected.extend(indices.iter().map(|&index| Rejected { index, reason: reason.clone() }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use mongodb::error::CommandError;

    use super::*;

    fn command(code: i32) -> MongoError {
        let c: CommandError =
            mongodb::bson::from_document(doc! {"code": code, "codeName": "X", "errmsg": "refused"}).unwrap();
        MongoError::from(ErrorKind::Command(c))
    }

    #[test]
    fn only_errors_a_retry_can_help_are_unavailable() {
        let io = MongoError::from(ErrorKind::Io(Arc::new(std::io::ErrorKind::ConnectionReset.into())));
        for e in [io, command(91), command(189), command(262), command(12345)] {
            assert!(failed(&e).is_retryable(), "{e}");
        }
        for e in [command(13), command(73), command(10334), command(17280)] {
            assert!(matches!(failed(&e), SinkError::Config(_)), "{e}");
        }
    }

    #[test]
    fn a_collection_the_server_refuses_rejects_only_its_records() {
        let mut rejected = Vec::new();
        refuse_collection(command(73), "env", &[1, 4], &mut rejected).unwrap();
        assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 4]);
        assert!(rejected[0].reason.contains("collection \"env\""), "{:?}", rejected[0]);
        // Authentication concerns the whole sink, and "later" errors the whole batch.
        let auth = refuse_collection(command(13), "env", &[1, 4], &mut rejected);
        assert!(matches!(auth, Err(SinkError::Config(_))), "{auth:?}");
        assert!(refuse_collection(command(91), "env", &[1, 4], &mut rejected).unwrap_err().is_retryable());
        assert_eq!(rejected.len(), 2);
    }
}
