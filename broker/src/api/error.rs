//! The one error answer of the admin API: `{"error": {"code", "message", ...details}}` with an
//! HTTP status. Every endpoint answers its failures with an [`ApiError`]; each feature's API
//! module maps its own errors into it (`From` impls beside the feature's handlers).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

/// An endpoint's error answer: a status, a stable `code` for programs, a `message` for people,
/// and more keys of the error object when there is more to say (e.g. each sample's result).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// More keys of the error object.
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Map::new() }
    }

    /// 400 `bad_request`: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413 `too_large`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 500 with `code` naming what failed.
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }

    /// 401 `unauthorized`, answered with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token; the admin token is in <data_dir>/admin.token",
        )
    }

    /// Adds `key` to the error object.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.into(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = self.details.clone();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        let mut resp = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(json!({ "error": error }))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn rendered(e: ApiError) -> (StatusCode, Option<String>, Value) {
        let resp = e.error_response();
        let status = resp.status();
        let auth = resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        let body = to_bytes(resp.into_body()).await.unwrap();
        (status, auth, serde_json::from_slice(&body).unwrap())
    }

    #[actix_web::test]
    async fn renders_code_message_and_details() {
        let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "samples_failed", "2 of 3 failed")
            .with("results", json!([1, 2]));
        let (status, auth, body) = rendered(e).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(auth, None);
        assert_eq!(
            body,
            json!({"error": {"code": "samples_failed", "message": "2 of 3 failed", "results": [1, 2]}})
        );
    }

    #[actix_web::test]
    async fn unauthorized_asks_for_a_bearer_token() {
        let (status, auth, body) = rendered(ApiError::unauthorized()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(auth.as_deref(), Some("Bearer"));
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}
