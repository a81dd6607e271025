//! The one mapping from error kinds to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use varta_core::{Error, ErrorKind};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status for each kind — the only place this mapping exists.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        // Internal details (SQL, paths) stay in the log, not in the response.
        let message = if kind == ErrorKind::Internal {
            tracing::error!(error = %self.0, "internal error in API");
            "internal error".to_owned()
        } else {
            self.0.to_string()
        };
        let body = serde_json::json!({"error": {"code": kind.code(), "message": message}});
        (status_of(kind), Json(body)).into_response()
    }
}
