//! `/api/v1/boards/...`: the board endpoints of the admin API. JSON in; JSON out, or for
//! operations on several boards at once, newline-delimited JSON (`application/x-ndjson`), one
//! event per line as it happens: `{"event":"progress",...}` while an upload goes on,
//! `{"event":"result",...}` when a board finishes (in the order boards finish), and a last
//! `{"event":"done","boards":N,"succeeded":S,"failed":F}`.
//!
//! Board names are hostlists everywhere (`b-[1-3],lab.pi4`); see `docs/boards.md`.
//!
//! [`BoardsApi`] registers these routes with the admin API and adds the board events to
//! `/metrics`.

use std::future::Future;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use roost_core::board::FsAction;
use roost_core::hostlist;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::install::{self, InstallError, LocalKind};
use super::ops::{sha256_hex, BoardResult};
use super::registry::BoardEntry;
use super::service::BoardService;
use crate::api::error::ApiError;
use crate::api::ApiFeature;
use crate::stats;

/// One line of an NDJSON answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An upload: `board` holds `offset` of `total` bytes.
    Progress { board: String, offset: u64, total: u64 },
    /// `install`: the package and the files every board is about to receive (under `lib/`).
    Package { package: String, files: Vec<String>, bytes: u64 },
    /// One board finished.
    Result(BoardResult),
    /// Every board finished.
    Done { boards: usize, succeeded: usize, failed: usize },
}

/// The board command service in the admin API.
pub struct BoardsApi(pub Arc<BoardService>);

impl ApiFeature for BoardsApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.0.clone()))
            .route("/boards", web::get().to(list))
            .route("/boards/scan", web::get().to(scan))
            .route("/boards/requests", web::get().to(requests))
            .route("/boards/counters", web::get().to(counters))
            .route("/boards/approve", web::post().to(approve))
            .route("/boards/exec", web::post().to(exec))
            .route("/boards/upload", web::post().to(upload))
            .route("/boards/install", web::post().to(install))
            .route("/boards/fs", web::post().to(fs))
            .route("/boards/reset", web::post().to(reset))
            .route("/boards/{name}", web::get().to(show))
            .route("/boards/{name}/rename", web::post().to(rename));
    }

    fn metrics(&self, out: &mut String) {
        stats::labelled_counters(
            out,
            "roost_board_events_total",
            "Board command channel events: requests sent; replies forged, unknown or malformed; \
             statuses malformed; publishes, subscriptions and last wills refused.",
            "event",
            self.0.counters.snapshot(),
        );
        let (states, pending) = self.0.state_counts();
        let mut boards = crate::prometheus::family(
            out,
            "roost_boards",
            crate::prometheus::Kind::Gauge,
            "Approved boards by state, and boards waiting for approval (state=\"pending\").",
        );
        for (state, n) in states {
            boards.sample(&[("state", state.as_str())], n as f64);
        }
        boards.sample(&[("state", "pending")], pending as f64);
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        let message = e.to_string();
        match e {
            InstallError::TooLarge(_) => ApiError::too_large(message),
            // 502: the package index failed, not the request.
            InstallError::Index(_) => ApiError::new(StatusCode::BAD_GATEWAY, "package_index", message),
            InstallError::NotFound { .. } => ApiError::not_found(message),
            _ => ApiError::bad_request(message),
        }
    }
}

/// Board names in a request: a hostlist.
fn names(hostlist: &str) -> Result<Vec<String>, ApiError> {
    let names = hostlist::expand(hostlist).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if names.is_empty() {
        return Err(ApiError::bad_request("no board names given"));
    }
    Ok(names)
}

fn without_history(mut e: BoardEntry) -> BoardEntry {
    e.history.clear();
    e
}

async fn list(state: web::Data<BoardService>) -> HttpResponse {
    let boards: Vec<_> = state.list().into_iter().map(without_history).collect();
    HttpResponse::Ok().json(json!({ "boards": boards }))
}

async fn scan(state: web::Data<BoardService>) -> HttpResponse {
    let boards: Vec<_> = state.scan().into_iter().map(without_history).collect();
    HttpResponse::Ok().json(json!({ "boards": boards }))
}

async fn requests(state: web::Data<BoardService>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "requests": state.requests() }))
}

async fn counters(state: web::Data<BoardService>) -> HttpResponse {
    HttpResponse::Ok().json(state.counters.snapshot())
}

async fn show(state: web::Data<BoardService>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let entry = state.get(&name).ok_or_else(|| ApiError::not_found(format!("no board named '{name}'")))?;
    Ok(HttpResponse::Ok().json(entry))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoardsBody {
    boards: String,
}

async fn approve(
    state: web::Data<BoardService>,
    body: web::Json<BoardsBody>,
) -> Result<HttpResponse, ApiError> {
    let names = names(&body.boards)?;
    let approved: Vec<_> = state
        .approve(&names)
        .into_iter()
        .map(|(board, was_pending)| json!({"board": board, "approved": was_pending}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "boards": approved })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    boards: String,
    code: String,
    #[serde(default = "default_exec_timeout")]
    timeout_ms: u64,
}

fn default_exec_timeout() -> u64 {
    30_000
}

async fn exec(state: web::Data<BoardService>, body: web::Json<ExecBody>) -> Result<HttpResponse, ApiError> {
    let names = names(&body.boards)?;
    let ExecBody { code, timeout_ms, .. } = body.into_inner();
    let code = Arc::new(code);
    Ok(fan_out(state.clone().into_inner(), names, move |svc, board, _events| {
        let code = code.clone();
        async move { svc.execute(&board, (*code).clone(), timeout_ms).await }
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FsBody {
    boards: String,
    action: FsAction,
    #[serde(default)]
    path: String,
}

async fn fs(state: web::Data<BoardService>, body: web::Json<FsBody>) -> Result<HttpResponse, ApiError> {
    let names = names(&body.boards)?;
    let FsBody { action, path, .. } = body.into_inner();
    Ok(fan_out(state.clone().into_inner(), names, move |svc, board, _events| {
        let path = path.clone();
        async move { svc.fs(&board, action, path).await }
    }))
}

async fn reset(
    state: web::Data<BoardService>,
    body: web::Json<BoardsBody>,
) -> Result<HttpResponse, ApiError> {
    let names = names(&body.boards)?;
    Ok(fan_out(
        state.clone().into_inner(),
        names,
        |svc, board, _events| async move { svc.reset(&board).await },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    new_name: String,
}

async fn rename(
    state: web::Data<BoardService>,
    name: web::Path<String>,
    body: web::Json<RenameBody>,
) -> HttpResponse {
    let svc = state.clone().into_inner();
    let (old, new) = (name.into_inner(), body.into_inner().new_name);
    let runner = svc.clone();
    let result = run_on(&runner, async move { svc.rename(&old, &new).await }).await;
    HttpResponse::Ok().json(result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    boards: String,
    /// The destination path on the boards.
    dest: String,
}

/// `POST /api/v1/boards/upload?boards=HOSTLIST&dest=PATH` with the file as the body.
async fn upload(
    state: web::Data<BoardService>,
    query: web::Query<UploadQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let names = names(&query.boards)?;
    let dest = query.dest.clone();
    roost_core::board::validate_path(&dest).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = state.settings.max_upload_bytes;
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::too_large(format!(
                "the file is larger than boards.max_upload_bytes ({limit} bytes)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let data: Bytes = body.freeze();
    let sha = Arc::new(sha256_hex(&data));
    Ok(fan_out(state.clone().into_inner(), names, move |svc, board, events| {
        let (data, sha, dest) = (data.clone(), sha.clone(), dest.clone());
        async move {
            let b = board.clone();
            svc.upload(&board, &dest, data, &sha, move |offset, total| {
                let _ = events.try_send(Event::Progress { board: b.clone(), offset, total });
            })
            .await
        }
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallQuery {
    boards: String,
    /// A package name (`NAME` or `NAME==VERSION`) resolved from `boards.package_index`.
    #[serde(default)]
    package: Option<String>,
    /// A local package in the body: what it is, and its file or directory name.
    #[serde(default)]
    kind: Option<LocalKind>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/v1/boards/install?boards=HOSTLIST&package=NAME[==VERSION]` (from the package
/// index), or `?boards=HOSTLIST&kind=py|dir|wheel|sdist&name=FILE` with the file (a tar for
/// `dir`) as the body. The package is fetched, checked and unpacked before any board is sent
/// anything; then NDJSON: one `package` event, progress, a result per board, `done`.
async fn install(
    state: web::Data<BoardService>,
    query: web::Query<InstallQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let names = names(&query.boards)?;
    let settings = &state.settings;
    let limits = settings.package_limits();
    let (kind, filename, data, label) = match (&query.package, query.kind, &query.name) {
        (Some(spec), None, None) => {
            let index = settings.package_index.clone().ok_or(InstallError::NoIndex)?;
            let spec = spec.clone();
            let svc = state.clone().into_inner();
            let (label, filename, data) =
                run_on(&svc, async move { install::fetch(&index, &spec, limits).await }).await?;
            let kind = if filename.ends_with(".whl") { LocalKind::Wheel } else { LocalKind::Sdist };
            (kind, filename, data, Some(label))
        }
        (None, Some(kind), Some(name)) => {
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the package: {e}")))?;
                if (body.len() + chunk.len()) as u64 > limits.max_download_bytes {
                    return Err(ApiError::too_large(format!(
                        "{name} is larger than boards.max_package_bytes ({} bytes)",
                        limits.max_download_bytes
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            (kind, name.clone(), body.freeze(), None)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either package=NAME[==VERSION], or kind=py|dir|wheel|sdist and name=FILE with the file as the body",
            ))
        }
    };
    let mut package = tokio::task::spawn_blocking(move || install::unpack(kind, &filename, &data, limits))
        .await
        .map_err(|e| ApiError::bad_request(format!("unpacking: {e}")))??;
    if let Some(label) = label {
        package.label = format!("{label} ({})", package.label);
    }
    let first = Event::Package {
        package: package.label.clone(),
        files: package.files.keys().map(|p| format!("lib/{p}")).collect(),
        bytes: package.total_bytes(),
    };
    let package = Arc::new(package);
    Ok(fan_out_with(state.clone().into_inner(), names, Some(first), move |svc, board, events| {
        let package = package.clone();
        async move {
            let b = board.clone();
            svc.install(&board, package, move |offset, total| {
                let _ = events.try_send(Event::Progress { board: b.clone(), offset, total });
            })
            .await
        }
    }))
}

/// Runs `fut` on the board service's runtime and waits for it.
async fn run_on<T: Send + 'static>(svc: &BoardService, fut: impl Future<Output = T> + Send + 'static) -> T {
    svc.runtime().spawn(fut).await.expect("board operations do not panic")
}

/// Runs `op` on every board in parallel and streams the events as NDJSON.
fn fan_out<F, Fut>(svc: Arc<BoardService>, names: Vec<String>, op: F) -> HttpResponse
where
    F: Fn(Arc<BoardService>, String, mpsc::Sender<Event>) -> Fut + Send + 'static,
    Fut: Future<Output = BoardResult> + Send + 'static,
{
    fan_out_with(svc, names, None, op)
}

/// [`fan_out`], with `first` sent before anything else.
fn fan_out_with<F, Fut>(
    svc: Arc<BoardService>,
    names: Vec<String>,
    first: Option<Event>,
    op: F,
) -> HttpResponse
where
    F: Fn(Arc<BoardService>, String, mpsc::Sender<Event>) -> Fut + Send + 'static,
    Fut: Future<Output = BoardResult> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Event>(4096);
    let runtime = svc.runtime().clone();
    runtime.spawn(async move {
        if let Some(first) = first {
            let _ = tx.send(first).await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        let total = names.len();
        for board in names {
            tasks.spawn(op(svc.clone(), board, tx.clone()));
        }
        let (mut succeeded, mut failed) = (0, 0);
        while let Some(done) = tasks.join_next().await {
            let result = match done {
                Ok(r) => r,
                Err(e) => BoardResult::refused("?", format!("internal error: {e}")),
            };
            if result.ok {
                succeeded += 1;
            } else {
                failed += 1;
            }
            let _ = tx.send(Event::Result(result)).await;
        }
        let _ = tx.send(Event::Done { boards: total, succeeded, failed }).await;
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, actix_web::Error>(Bytes::from(line)), rx))
    });
    HttpResponse::Ok().content_type("application/x-ndjson").streaming(lines)
}
