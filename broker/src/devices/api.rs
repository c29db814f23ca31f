//! `/api/v1/devices`: the device registry.
//!
//! - `GET /devices`: `{"devices": [{name, created_ms, rotated_ms, revoked_ms}]}`.
//! - `POST /devices` `{"name": "sensor-1"}`: `201 {"name", "secret"}`; the secret is shown once.
//! - `GET /devices/{name}`: one device.
//! - `POST /devices/{name}/rotate`: `{"name", "secret"}`, a new secret; its sessions are
//!   disconnected.
//! - `POST /devices/{name}/revoke`: `{"revoked": name}`; its sessions are disconnected.
//!
//! `/metrics` gets `roost_auth_events_total{event}`: connections accepted with credentials,
//! refused for bad credentials, refused as not authorized, and device publishes refused; and
//! `roost_device_refusals_total{device}`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{DeviceError, Devices};
use crate::api::error::ApiError;
use crate::api::ApiFeature;
use crate::stats;

/// The devices feature of the admin API.
pub struct DevicesApi(pub Arc<Devices>);

impl ApiFeature for DevicesApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.0.clone()))
            .route("/devices", web::get().to(list))
            .route("/devices", web::post().to(add))
            .route("/devices/{name}", web::get().to(show))
            .route("/devices/{name}/rotate", web::post().to(rotate))
            .route("/devices/{name}/revoke", web::post().to(revoke));
    }

    fn metrics(&self, out: &mut String) {
        let c = &self.0.counters;
        stats::labelled_counters(
            out,
            "roost_auth_events_total",
            "MQTT connections accepted with device credentials or refused (bad credentials, not \
             authorized), and device publishes refused.",
            "event",
            [
                ("accepted", c.accepted.load(Relaxed)),
                ("bad_credentials", c.bad_credentials.load(Relaxed)),
                ("not_authorized", c.not_authorized.load(Relaxed)),
                ("publishes_denied", c.publishes_denied.load(Relaxed)),
                ("subscribes_denied", c.subscribes_denied.load(Relaxed)),
                ("packets_too_large", c.packets_too_large.load(Relaxed)),
            ],
        );
        let refusals = self.0.refusals.snapshot();
        stats::labelled_counters(
            out,
            "roost_device_refusals_total",
            "Publishes, subscriptions, wills and connections refused, by device (its registered \
             name, or an anonymous client's id): outside its topics, over mqtt.device_rate or \
             mqtt.max_connections_per_device.",
            "device",
            refusals.iter().map(|(d, n)| (d.as_str(), *n)),
        );
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        let status = match &e {
            DeviceError::InvalidName { .. } => StatusCode::BAD_REQUEST,
            DeviceError::Exists(_) => StatusCode::CONFLICT,
            DeviceError::NotFound(_) => StatusCode::NOT_FOUND,
            DeviceError::Open { .. } | DeviceError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let code = match &e {
            DeviceError::InvalidName { .. } => "invalid_name",
            DeviceError::Exists(_) => "exists",
            DeviceError::NotFound(_) => "not_found",
            DeviceError::Open { .. } | DeviceError::Db(_) => "device_store",
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Runs a store call (SQLite, argon2) off the async threads.
async fn blocking<T: Send + 'static>(
    devices: &web::Data<Devices>,
    f: impl FnOnce(&Devices) -> Result<T, DeviceError> + Send + 'static,
) -> Result<T, ApiError> {
    let devices = devices.clone().into_inner();
    match web::block(move || f(&devices)).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::internal("internal", e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    name: String,
}

async fn list(devices: web::Data<Devices>) -> Result<HttpResponse, ApiError> {
    let list = blocking(&devices, |d| d.list()).await?;
    Ok(HttpResponse::Ok().json(json!({ "devices": list })))
}

async fn add(devices: web::Data<Devices>, body: web::Json<NewDevice>) -> Result<HttpResponse, ApiError> {
    let name = body.into_inner().name;
    let n = name.clone();
    let secret = blocking(&devices, move |d| d.add(&n)).await?;
    Ok(HttpResponse::Created().json(json!({ "name": name, "secret": secret })))
}

async fn show(devices: web::Data<Devices>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let device = blocking(&devices, move |d| d.get(&name)).await?;
    Ok(HttpResponse::Ok().json(device))
}

async fn rotate(devices: web::Data<Devices>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let n = name.clone();
    let secret = blocking(&devices, move |d| d.rotate(&n)).await?;
    Ok(HttpResponse::Ok().json(json!({ "name": name, "secret": secret })))
}

async fn revoke(devices: web::Data<Devices>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let n = name.clone();
    blocking(&devices, move |d| d.revoke(&n)).await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": name })))
}
