//! The one error type shared by Varta's library crates.
//!
//! An [`Error`] is a [`ErrorKind`] (what the caller can do about it) plus a message
//! that already carries its context (camera id, redacted URL, element, key path).
//! The API maps kinds to HTTP status codes in exactly one function.

use std::fmt;

/// What kind of failure this is, from the caller's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked for does not exist.
    NotFound,
    /// The caller sent something malformed (config, query parameter, body).
    InvalidArgument,
    /// A dependency (database, camera, model runtime) is not reachable right now.
    Unavailable,
    /// The caller may not do this.
    PermissionDenied,
    /// The caller did not say who it is, or its credentials are wrong or expired.
    Unauthenticated,
    /// Too many attempts; try again later.
    RateLimited,
    /// The request conflicts with the current state (e.g. a forbidden state change).
    Conflict,
    /// The route exists, but not for this HTTP method.
    MethodNotAllowed,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    /// A stable snake_case code for API responses and logs.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Conflict => "conflict",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with a kind, a message and an optional source.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with `msg`.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), source: None }
    }

    /// Wraps `source` with `kind` and a message giving the context.
    pub fn wrap<E>(kind: ErrorKind, msg: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error { kind, msg: msg.into(), source: Some(Box::new(source)) }
    }

    /// What the caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// Shorthand constructors: `err!(NotFound, "camera {id}")`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)+) => {
        $crate::Error::new($crate::ErrorKind::$kind, format!($($arg)+))
    };
}
