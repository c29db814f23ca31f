//! `/api/v1/processors`: upload, test, list, show, roll back and delete processors.
//!
//! - `PUT /processors/{name}`: the body is the `.wasm` file, or `multipart/form-data` with a
//!   `module` part and a `samples` part (a JSON array of sample messages). The module is compiled,
//!   checked (world, version, imports), started with the config of every pipeline that follows
//!   it, run on the samples, and only then stored as the next version and made active.
//!   201 `{"name","version","sha256","size","samples"}`.
//! - `POST /processors/{name}/test`: JSON `{"samples": [...], "version": N}` runs a stored
//!   version (default: the active one); multipart `module` + `samples` tests a file without
//!   storing it. 200 `{"ok": bool, "results": [...]}`.
//! - `GET /processors`, `GET /processors/{name}`: versions with sha256, size, upload time and
//!   call statistics.
//! - `POST /processors/{name}/rollback`: JSON `{"version": N}`, or no body for the version
//!   before the active one.
//! - `DELETE /processors/{name}`: every version; refused (409) while a pipeline names it.
//!
//! Errors: `{"error": {"code", "message"}}`, plus `results` when samples failed.
//!
//! [`ProcessorsApi`] registers these routes with the admin API, names each pipeline's processor
//! in the status and adds the processors' call statistics to `/metrics`.

use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use roost_core::Message;
use roost_processors::wasm::{Registry, RegistryError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Processors;
use crate::api::error::ApiError;
use crate::api::ApiFeature;
use crate::stats::{self, Status};

/// The processors in the admin API.
pub struct ProcessorsApi(pub Arc<Processors>);

impl ApiFeature for ProcessorsApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.0.clone()))
            .route("/processors", web::get().to(list))
            .route("/processors/{name}", web::get().to(show))
            .route("/processors/{name}", web::put().to(upload))
            .route("/processors/{name}", web::delete().to(delete))
            .route("/processors/{name}/test", web::post().to(test))
            .route("/processors/{name}/rollback", web::post().to(rollback));
    }

    fn status(&self, status: &mut Status) {
        for p in &mut status.pipelines {
            p.processor = self.0.label(&p.name);
        }
    }

    fn metrics(&self, out: &mut String) {
        stats::processor_metrics(out, &self.0.registry.list());
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::BadName { .. } => ApiError::bad_request(message),
            RegistryError::NotFound(_) | RegistryError::NoVersion { .. } => ApiError::not_found(message),
            RegistryError::NoEarlier(_) => ApiError::new(StatusCode::CONFLICT, "no_earlier_version", message),
            RegistryError::Load(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_module", message),
            RegistryError::Init { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "init_failed", message)
            }
            RegistryError::Samples { results, .. } => {
                let failures: Vec<String> = results
                    .iter()
                    .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.topic)))
                    .collect();
                let message = format!("{message}: {}", failures.join("; "));
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "samples_failed", message)
                    .with("results", json!(results))
            }
            RegistryError::Io { .. } => ApiError::internal("processor_store", message),
        }
    }
}

/// A sample message as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub topic: String,
    /// A JSON string is the payload's text; any other JSON value is serialized.
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    #[serde(default)]
    pub user_properties: Vec<(String, String)>,
}

impl Sample {
    fn into_message(self) -> Message {
        let client_id = self.client_id.unwrap_or_else(|| "sample".into());
        let device = roost_core::topic::device_topic(&self.topic)
            .map(|(d, _)| d.to_string())
            .unwrap_or_else(|| client_id.clone());
        let payload = match self.payload {
            Value::String(s) => s.into_bytes(),
            Value::Null => Vec::new(),
            other => other.to_string().into_bytes(),
        };
        Message {
            topic: self.topic,
            client_id,
            device,
            payload,
            received_at: roost_core::envelope::now_ns(),
            qos: self.qos,
            retain: self.retain,
            user_properties: self.user_properties,
        }
    }
}

fn parse_samples(bytes: &[u8]) -> Result<Vec<Message>, ApiError> {
    let samples: Vec<Sample> = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("samples: not a JSON array of {{\"topic\", \"payload\"}} objects: {e}"))
    })?;
    Ok(samples.into_iter().map(Sample::into_message).collect())
}

/// The module bytes and samples of an upload or test request.
struct Upload {
    module: Option<Vec<u8>>,
    samples: Vec<Message>,
}

fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// Reads a body of at most `limit` bytes: a raw `.wasm`, or multipart `module` + `samples`.
async fn read_upload(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Upload, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the upload is larger than processors.max_upload_mib ({} MiB)",
            limit >> 20
        ))
    };
    if !is_multipart(req) {
        let mut body = Vec::new();
        let mut payload = payload;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Upload { module: Some(body), samples: Vec::new() });
    }
    let mut parts = Multipart::new(req.headers(), payload);
    let mut upload = Upload { module: None, samples: Vec::new() };
    let mut total = 0;
    while let Some(field) = parts.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("reading the multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading part {name:?}: {e}")))?;
            total += chunk.len();
            if total > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "module" => upload.module = Some(bytes),
            "samples" => upload.samples = parse_samples(&bytes)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part {other:?}; send `module` and `samples`"
                )))
            }
        }
    }
    Ok(upload)
}

/// Runs a registry call off the async threads (compiling a module takes a while). The outer
/// error is the task failing; the inner one the registry's answer.
async fn run_blocking<T: Send + 'static>(
    state: &Processors,
    f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<Result<T, RegistryError>, ApiError> {
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || f(&registry))
        .await
        .map_err(|e| ApiError::internal("internal", e.to_string()))
}

/// [`run_blocking`], with the registry's errors as answers.
async fn blocking<T: Send + 'static>(
    state: &Processors,
    f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(run_blocking(state, f).await??)
}

/// What upload and test share: the checked name, the body (module and samples) and the init
/// configs of the pipelines that follow the name.
async fn read_request(
    state: &Processors,
    name: web::Path<String>,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(String, Upload, Vec<String>), ApiError> {
    let name = name.into_inner();
    roost_processors::wasm::check_name(&name)?;
    let limit = state.settings.max_upload_mib << 20;
    let upload = read_upload(req, payload, limit).await?;
    let configs = state.configs_for(&name);
    Ok((name, upload, configs))
}

async fn upload(
    state: web::Data<Processors>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (name, Upload { module, samples }, configs) = read_request(&state, name, &req, payload).await?;
    let module = module
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("no module: send the .wasm file as the body"))?;
    let uploaded = blocking(&state, move |r| r.upload(&name, &module, &configs, &samples)).await?;
    Ok(HttpResponse::Created().json(uploaded))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    samples: Vec<Sample>,
    #[serde(default)]
    version: Option<u32>,
}

async fn test(
    state: web::Data<Processors>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let multipart = is_multipart(&req);
    let (name, upload, configs) = read_request(&state, name, &req, payload).await?;
    let result = if multipart {
        let Upload { module, samples } = upload;
        let module = module.ok_or_else(|| ApiError::bad_request("no `module` part"))?;
        run_blocking(&state, move |r| r.check(&name, &module, &configs, &samples).map(|(_, results)| results))
            .await?
    } else {
        let body = upload.module.unwrap_or_default();
        let request: TestRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("expected {{\"samples\": [...], \"version\": N}}: {e}"))
        })?;
        let samples: Vec<Message> = request.samples.into_iter().map(Sample::into_message).collect();
        let version = request.version;
        run_blocking(&state, move |r| r.test(&name, version, &configs, &samples)).await?
    };
    match result {
        Ok(results) => Ok(HttpResponse::Ok().json(json!({"ok": true, "results": results}))),
        Err(RegistryError::Samples { results, .. }) => {
            Ok(HttpResponse::Ok().json(json!({"ok": false, "results": results})))
        }
        Err(e) => Err(e.into()),
    }
}

async fn list(state: web::Data<Processors>) -> HttpResponse {
    let mut processors = state.registry.list();
    let mut out = Vec::new();
    for p in processors.drain(..) {
        let pipelines = state.pipelines_using(&p.name);
        let mut v = json!(p);
        v["pipelines"] = json!(pipelines);
        out.push(v);
    }
    HttpResponse::Ok().json(json!({ "processors": out }))
}

async fn show(state: web::Data<Processors>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let info = state.registry.info(&name)?;
    let mut v = json!(info);
    v["pipelines"] = json!(state.pipelines_using(&name));
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    #[serde(default)]
    version: Option<u32>,
}

async fn rollback(
    state: web::Data<Processors>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"version\": N}}: {e}")))?
    };
    let name = name.into_inner();
    let reply_name = name.clone();
    let active = blocking(&state, move |r| r.rollback(&name, request.version)).await?;
    Ok(HttpResponse::Ok().json(json!({"name": reply_name, "active": active})))
}

async fn delete(state: web::Data<Processors>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let users = state.pipelines_using(&name);
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_use",
            format!("processor {name} is used by pipeline(s) {}; change the config first", users.join(", ")),
        ));
    }
    let reply_name = name.clone();
    blocking(&state, move |r| r.delete(&name)).await?;
    Ok(HttpResponse::Ok().json(json!({"deleted": reply_name})))
}
