//! `GET /api/v1/export?sink=&measurement=&device=&from=&to=&format=csv|jsonl|zip`: the same
//! export as `roost export`, streamed as the response body (chunked). `measurement` and
//! `device` may repeat; `format=zip` is a zip of CSV files (`zip_format=jsonl` for JSON lines).
//!
//! The export runs on the server's runtime, not on the API's worker thread, and hands its
//! chunks over a bounded channel: a slow client slows the database read, nothing piles up.
//! Errors found before the first byte (an unknown sink or measurement, a database that does
//! not answer) are answered as JSON errors; an error later ends the response early, so the
//! client sees an incomplete transfer, never a complete-looking file.

use std::io;

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use roost_connectors::export::{ExportError, Query};
use roost_connectors::SinkContext;
use tokio::sync::mpsc;

use super::{encode, prepare, Error, Format, Output, Request};
use crate::api::error::ApiError;
use crate::api::ApiFeature;
use crate::config::SinkSpec;

/// The export endpoint's state.
pub struct ExportApi {
    pub sinks: Vec<SinkSpec>,
    pub ctx: SinkContext,
    /// The server's runtime, where exports run.
    pub runtime: tokio::runtime::Handle,
}

impl ApiFeature for ExportApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        let state = web::Data::new(ExportApi {
            sinks: self.sinks.clone(),
            ctx: self.ctx.clone(),
            runtime: self.runtime.clone(),
        });
        cfg.app_data(state).route("/export", web::get().to(export));
    }
}

/// The request from the query string.
fn request(pairs: &[(String, String)], sinks: &[SinkSpec]) -> Result<Request, ApiError> {
    let mut query = Query::default();
    let mut sink = None;
    let mut format = "csv".to_owned();
    let mut zip_format = Format::Csv;
    let time =
        |key: &str, v: &str| encode::parse_time(v).map_err(|e| ApiError::bad_request(format!("{key}: {e}")));
    for (k, v) in pairs {
        match k.as_str() {
            "sink" => sink = Some(v.clone()),
            "measurement" => {
                query.measurements.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned))
            }
            "device" => query.devices.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned)),
            "from" => query.from = Some(time("from", v)?),
            "to" => query.to = Some(time("to", v)?),
            "format" => format = v.clone(),
            "zip_format" => {
                zip_format = match v.as_str() {
                    "csv" => Format::Csv,
                    "jsonl" => Format::Jsonl,
                    _ => return Err(ApiError::bad_request("zip_format must be csv or jsonl")),
                }
            }
            other => return Err(ApiError::bad_request(format!("unknown parameter {other:?}"))),
        }
    }
    let sink = match (sink, sinks) {
        (Some(s), _) => s,
        (None, [only]) => only.name.clone(),
        (None, _) => return Err(ApiError::bad_request("name the sink with sink=NAME")),
    };
    let (format, zip) = match format.as_str() {
        "csv" => (Format::Csv, false),
        "jsonl" => (Format::Jsonl, false),
        "zip" => (zip_format, true),
        other => return Err(ApiError::bad_request(format!("format {other:?}: use csv, jsonl or zip"))),
    };
    Ok(Request { sink, query, format, zip })
}

fn api_error(e: Error) -> ApiError {
    let message = e.to_string();
    match e {
        Error::UnknownSink { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown_sink", message),
        Error::Invalid(_) => ApiError::bad_request(message),
        Error::Source { error: ExportError::UnknownMeasurement { .. }, .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_measurement", message)
        }
        Error::Source { error: ExportError::Unsupported(_), .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported", message)
        }
        Error::Source { error: ExportError::Config(_), .. } => {
            ApiError::new(StatusCode::CONFLICT, "sink_unreadable", message)
        }
        Error::Source { error: ExportError::Unavailable(_), .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", message)
        }
        Error::Io(_) => ApiError::internal("export_failed", message),
    }
}

/// Chunks sent to the response.
struct Channel(mpsc::Sender<Result<Bytes, io::Error>>);

impl Output for Channel {
    async fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.0
            .send(Ok(Bytes::from(chunk)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

async fn export(
    state: web::Data<ExportApi>,
    pairs: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let request = request(&pairs, &state.sinks)?;
    let (sinks, ctx) = (state.sinks.clone(), state.ctx.clone());
    let prepared = state
        .runtime
        .spawn(async move { prepare(&sinks, &ctx, request).await })
        .await
        .map_err(|e| ApiError::internal("export_failed", e.to_string()))?
        .map_err(api_error)?;
    let content_type = match (prepared.request.zip, prepared.request.format) {
        (true, _) => "application/zip",
        (false, Format::Csv) => "text/csv; charset=utf-8",
        (false, Format::Jsonl) => "application/x-ndjson",
    };
    let disposition = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(prepared.file_name())],
    };
    let (tx, rx) = mpsc::channel(4);
    state.runtime.spawn(async move {
        let sink = prepared.request.sink.clone();
        let mut out = Channel(tx.clone());
        if let Err(e) = prepared.run(&mut out, &mut |_, _| {}).await {
            tracing::warn!(sink = %sink, error = %e, "export over the api failed");
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn the_query_string_becomes_a_request() {
        let r = request(&pairs("sink=db&measurement=a,b&measurement=c&device=d1&from=1&format=zip"), &[])
            .unwrap();
        assert_eq!(r.sink, "db");
        assert_eq!(r.query.measurements, ["a", "b", "c"]);
        assert_eq!(r.query.devices, ["d1"]);
        assert_eq!(r.query.from, Some(1_000_000_000));
        assert!(r.zip);
        assert_eq!(r.format, Format::Csv);
        assert!(request(&pairs("sink=db&format=xml"), &[]).is_err());
        assert!(request(&pairs("sink=db&color=red"), &[]).is_err());
        assert!(request(&pairs("format=csv"), &[]).is_err());
    }
}
