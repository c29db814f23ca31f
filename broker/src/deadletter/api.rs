//! `/api/v1/deadletters`: list, replay and delete dead letters.
//!
//! - `GET /deadletters?source=&after=&limit=`: `{"total": n, "entries": [...]}`, oldest first.
//! - `POST /deadletters/replay?source=&ids=1,2`: sends each record back to its sink's spool and
//!   each message back to its pipeline, and deletes an entry once it is stored again;
//!   `{"replayed": n, "skipped": [{"id", "reason"}]}`. A replayed record the database refuses
//!   again comes back as a new entry.
//! - `DELETE /deadletters?source=&ids=1,2&all=true`: `{"deleted": n}`; deleting everything needs
//!   `all=true`.
//!
//! [`DeadLetterApi`] registers these routes with the admin API and fills in the status's
//! dead-letter counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use roost_core::Record;
use serde::Deserialize;
use serde_json::json;

use super::{DeadLetterError, DeadLetters, Letter, Selection};
use crate::api::error::ApiError;
use crate::api::ApiFeature;
use crate::pipeline::Mailbox;
use crate::sink::SinkHandle;
use crate::stats::{DeadLetterStatus, Status};

/// Most entries one replay hands over.
const MAX_REPLAY: usize = 100_000;

/// Where replayed letters go; emptied when Roost stops so that the sinks can finish.
#[derive(Default)]
pub struct Replay {
    targets: Mutex<Option<Targets>>,
}

#[derive(Clone, Default)]
pub struct Targets {
    pub sinks: HashMap<String, SinkHandle>,
    pub pipelines: HashMap<String, Mailbox>,
}

impl Replay {
    pub fn new(targets: Targets) -> Self {
        Replay { targets: Mutex::new(Some(targets)) }
    }

    /// Drops the handles: no more replays, and the actors can shut down.
    pub fn close(&self) {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn targets(&self) -> Option<Targets> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The dead letters in the admin API: the store and where replayed letters go.
#[derive(Clone)]
pub struct DeadLetterApi {
    pub dead_letters: DeadLetters,
    pub replay: Arc<Replay>,
}

impl ApiFeature for DeadLetterApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()))
            .route("/deadletters", web::get().to(list))
            .route("/deadletters", web::delete().to(delete))
            .route("/deadletters/replay", web::post().to(replay));
    }

    fn status(&self, status: &mut Status) {
        status.dead_letters = DeadLetterStatus::of(&self.dead_letters.stats);
    }
}

impl From<DeadLetterError> for ApiError {
    fn from(e: DeadLetterError) -> Self {
        ApiError::internal("dead_letter_store", e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    source: Option<String>,
    /// Comma-separated ids.
    ids: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
    all: Option<bool>,
}

impl Query {
    fn selection(&self) -> Result<Selection, ApiError> {
        let ids = match &self.ids {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().parse::<i64>())
                .collect::<Result<_, _>>()
                .map_err(|_| ApiError::bad_request(format!("ids {s:?} is not a list of numbers")))?,
        };
        Ok(Selection { ids, source: self.source.clone().filter(|s| !s.is_empty()) })
    }
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &DeadLetters,
    f: impl FnOnce(&DeadLetters) -> Result<T, DeadLetterError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::internal("internal", e.to_string())),
    }
}

async fn list(state: web::Data<DeadLetterApi>, q: web::Query<Query>) -> Result<HttpResponse, ApiError> {
    let sel = q.selection()?;
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100).min(10_000));
    let (total, entries) =
        blocking(&state.dead_letters, move |s| Ok((s.count()?, s.list(&sel, after, limit)?))).await?;
    Ok(HttpResponse::Ok().json(json!({"total": total, "entries": entries})))
}

async fn delete(state: web::Data<DeadLetterApi>, q: web::Query<Query>) -> Result<HttpResponse, ApiError> {
    let sel = q.selection()?;
    if sel.ids.is_empty() && sel.source.is_none() && q.all != Some(true) {
        let message = "name ids or a source, or pass all=true to delete every dead letter".to_owned();
        return Err(ApiError::bad_request(message));
    }
    let n = blocking(&state.dead_letters, move |s| s.delete(&sel)).await?;
    Ok(HttpResponse::Ok().json(json!({"deleted": n})))
}

async fn replay(state: web::Data<DeadLetterApi>, q: web::Query<Query>) -> Result<HttpResponse, ApiError> {
    let sel = q.selection()?;
    let Some(targets) = state.replay.targets() else {
        let message = "roost is stopping".to_owned();
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", message));
    };
    let letters = blocking(&state.dead_letters, move |s| s.letters(&sel, MAX_REPLAY)).await?;
    let mut replayed = Vec::new();
    let mut skipped = Vec::new();
    let mut records: HashMap<String, Vec<(i64, Record)>> = HashMap::new();
    // A message letter counts as replayed once its pipeline has stored it again (in its sinks'
    // spools, or back in this store); only then is the letter deleted.
    let mut stored = Vec::new();
    for (id, letter) in letters {
        match letter {
            Letter::Record { sink, record, .. } => records.entry(sink).or_default().push((id, record)),
            Letter::Message { pipeline, message, .. } => match targets.pipelines.get(&pipeline) {
                Some(mailbox) => match mailbox.send(message, true).await {
                    Ok(done) => stored.extend(done.map(|done| (id, done))),
                    Err(_) => skipped.push(json!({"id": id, "reason": "roost is stopping"})),
                },
                None => skipped.push(json!({"id": id, "reason": format!("no pipeline named {pipeline:?}")})),
            },
        }
    }
    for (id, done) in stored {
        match done.await {
            Ok(()) => replayed.push(id),
            Err(_) => skipped.push(json!({"id": id, "reason": "roost is stopping"})),
        }
    }
    for (sink, entries) in records {
        let (ids, batch): (Vec<i64>, Vec<Record>) = entries.into_iter().unzip();
        match targets.sinks.get(&sink) {
            // In the sink's spool on disk: the sink writes it or dead-letters it again.
            Some(handle) if handle.send(&batch).await.is_ok() => replayed.extend(ids),
            Some(_) => skipped.extend(ids.iter().map(|id| json!({"id": id, "reason": "roost is stopping"}))),
            None => {
                let reason = format!("no sink named {sink:?}");
                skipped.extend(ids.iter().map(|id| json!({"id": id, "reason": reason})));
            }
        }
    }
    let n = replayed.len();
    blocking(&state.dead_letters, move |s| s.delete_ids(&replayed)).await?;
    state.dead_letters.stats.replayed.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(HttpResponse::Ok().json(json!({"replayed": n, "skipped": skipped})))
}
