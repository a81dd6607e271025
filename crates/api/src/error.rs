//! The API's one error type ([`ApiError`]) and the one place it is rendered: the
//! status for each kind and the body `{"error": {"code", "message"}}` ([`crate::ErrorBody`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use varta_core::{Error, ErrorKind};

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error on its way to the client; for a refusal, with who was refused.
#[derive(Debug)]
pub struct ApiError(pub Error, pub Option<String>);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e, None)
    }
}

/// The HTTP status for each kind — the only place this mapping exists.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        // Internal details (SQL, paths) stay in the log, not in the response.
        // So do a dependency's own words (a database error names hosts and SQL):
        // an `Unavailable` that wraps one says only that.
        let message = if kind == ErrorKind::Internal {
            tracing::error!(error = %self.0, "internal error in API");
            "internal error".to_owned()
        } else if kind == ErrorKind::Unavailable && std::error::Error::source(&self.0).is_some() {
            tracing::warn!(error = %self.0, "API request failed on a dependency");
            "unavailable: the database or another dependency did not answer; try again".to_owned()
        } else {
            self.0.to_string()
        };
        let body = crate::ErrorBody { error: crate::ErrorDetail { code: kind.code().to_owned(), message } };
        let mut r = (status_of(kind), Json(body)).into_response();
        if kind == ErrorKind::PermissionDenied {
            r.extensions_mut().insert(Denied(self.1));
        }
        r
    }
}

/// Marks a refusal (403) so the router's guard writes its audit row with the
/// caller and the route (see `crate::guard`).
#[derive(Clone, Debug)]
pub struct Denied(pub Option<String>);

/// `Json<T>` whose rejections (bad JSON, wrong types, wrong content type, a NUL
/// character in any string) are 400s in the one error shape.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // Parsed as a value first so that strings can be checked for NUL, which
        // PostgreSQL text cannot store (it would fail as a 500 at the database).
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(varta_core::err!(InvalidArgument, "request body too large").into());
            }
            Err(e) => return Err(varta_core::err!(InvalidArgument, "{}", e.body_text()).into()),
        };
        if has_nul(&value) {
            return Err(varta_core::err!(InvalidArgument, "the request body contains a NUL character (\\u0000)").into());
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| varta_core::err!(InvalidArgument, "Failed to deserialize the JSON body: {e}").into())
    }
}

/// A JSON body that may be left out: no body (or an empty one) is `None`; one that
/// is there is read as [`Body`] reads it.
pub struct MaybeBody<T>(pub Option<T>);

impl<T, S> axum::extract::FromRequest<S> for MaybeBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let empty = req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v == "0")
            || !req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if empty {
            return Ok(MaybeBody(None));
        }
        Body::<T>::from_request(req, state).await.map(|Body(t)| MaybeBody(Some(t)))
    }
}

/// Whether any string (or object key) in `v` holds a NUL character.
fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// `Query<T>` whose rejections are 400s in the one error shape.
pub struct Q<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Q<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Q(q.0))
            .map_err(|e| varta_core::err!(InvalidArgument, "{}", e.body_text()).into())
    }
}

/// A path segment that must be an integer id.
pub fn int_id(s: &str) -> Result<i64, ApiError> {
    s.parse().map_err(|_| varta_core::err!(InvalidArgument, "`{s}` is not an id (an integer)").into())
}
