//! The API's one error type and the one place where every error — ours, poem's and
//! poem-openapi's — becomes the JSON body of DESIGN §6:
//! `{"error": {"code": "...", "message": "...", "details": ...}}`.

use crewgraph_core::db::{self, DbFailure};
use crewgraph_core::error::CoreError;
use poem::PathPattern;
use poem::error::{MethodNotAllowedError, NotFoundError, ResponseError};
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseMultipartError, ParseParamError, ParsePathError,
    ParseRequestPayloadError,
};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(example)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (snake_case); clients branch on this, not on `message`.
    pub code: String,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// Extra structured information (for example the list of validation problems).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: "not_found".into(),
                message: "graph not found".into(),
                details: None,
            },
        }
    }
}

/// Errors a handler can return. Each variant's status is decided in [`ApiError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (syntax, parameters).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: missing, invalid or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but this role may not do this (or the feature is switched off).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: no such resource *for this caller* (someone else's resource is also 404).
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the stored state (duplicate, stale version).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// 413: the body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 413: a part of the body (a graph document, say) is larger than its own limit.
    #[error("{message}")]
    TooLarge {
        code: &'static str,
        message: String,
        limit: usize,
    },
    /// 428: a write must say which version it replaces (`If-Match` or `version`).
    #[error("{0}")]
    PreconditionRequired(String),
    /// 422: well-formed but semantically invalid (each problem in `details`).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// 429: a rate limit or quota was hit; `retry_after` seconds go in `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Option<u64>,
    },
    /// 429: a quota is used up (e.g. active executions); no fixed wait helps.
    #[error("{message}")]
    QuotaExceeded { code: &'static str, message: String },
    /// 503: a dependency (the database) is unavailable.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// 500: a bug or an unexpected failure. The cause is logged, never sent.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::TooLarge { code, .. } => code,
            ApiError::Unprocessable { code, .. } => code,
            ApiError::PreconditionRequired(_) => "precondition_required",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::QuotaExceeded { code, .. } => code,
            ApiError::Unavailable { code, .. } => code,
            ApiError::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::Conflict { details, .. }
            | ApiError::Unprocessable { details, .. }
            | ApiError::Unavailable { details, .. } => details.clone(),
            ApiError::PayloadTooLarge { limit } | ApiError::TooLarge { limit, .. } => {
                Some(serde_json::json!({ "limit_bytes": limit }))
            }
            _ => None,
        }
    }
}

/// The one mapping from domain errors to HTTP.
impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::Invalid {
                code,
                message,
                field,
            } => ApiError::Unprocessable {
                code,
                message,
                details: field.map(|f| serde_json::json!({ "field": f })),
            },
            CoreError::Problems {
                code,
                message,
                details,
            } => ApiError::Unprocessable {
                code,
                message,
                details: Some(details),
            },
            CoreError::TooLarge {
                code,
                message,
                limit,
            } => ApiError::TooLarge {
                code,
                message,
                limit,
            },
            CoreError::PreconditionRequired(message) => {
                ApiError::PreconditionRequired(message.into())
            }
            CoreError::Unauthenticated(message) => ApiError::Unauthorized(message.into()),
            CoreError::Forbidden(message) => ApiError::Forbidden {
                code: "forbidden",
                message: message.into(),
            },
            CoreError::Disabled(message) => ApiError::Forbidden {
                code: "disabled",
                message: message.into(),
            },
            CoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            CoreError::Conflict {
                code,
                message,
                details,
            } => ApiError::Conflict {
                code,
                message,
                details,
            },
            CoreError::Quota { code, message } => ApiError::QuotaExceeded { code, message },
            CoreError::RateLimited { retry_after_secs } => ApiError::TooManyRequests {
                message: format!("too many attempts: retry in {retry_after_secs} s"),
                retry_after: Some(retry_after_secs),
            },
            CoreError::Database(db_err) => from_database(db_err),
            CoreError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// Database errors, by what they mean (`core::db::classify`).
fn from_database(err: sea_orm::DbErr) -> ApiError {
    match db::classify(&err) {
        DbFailure::Unavailable(cause) => {
            tracing::warn!(error = %err, cause = cause.as_str(), "database unavailable");
            ApiError::Unavailable {
                code: "database_unavailable",
                message: "the database is unavailable, retry shortly".into(),
                details: None,
            }
        }
        DbFailure::OutOfFileDescriptors => {
            tracing::error!(error = %err, "out of file descriptors: raise the open-files limit");
            ApiError::Unavailable {
                code: "server_overloaded",
                message: "the server has too many open connections right now, retry shortly".into(),
                details: None,
            }
        }
        // PostgreSQL refuses NUL bytes in text: the client's mistake.
        DbFailure::UnstorableText => ApiError::BadRequest {
            code: "invalid_text",
            message: "text fields may not contain NUL characters or invalid UTF-8".into(),
        },
        DbFailure::Other => ApiError::internal(err),
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } | ApiError::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::TooManyRequests { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "internal error");
        }
        let mut response = json_error(self.status(), self.code(), self.to_string(), self.details());
        if let ApiError::TooManyRequests {
            retry_after: Some(seconds),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().expect("digits"));
        }
        if let ApiError::PayloadTooLarge { .. } = self {
            // The unread rest of the body is still on the wire: tell the client this
            // connection ends, so it does not send its next request into it.
            response
                .headers_mut()
                .insert("connection", "close".parse().expect("static"));
        }
        if let ApiError::Unauthorized(_) = self {
            response
                .headers_mut()
                .insert("www-authenticate", "Bearer".parse().expect("static"));
        }
        response
    }
}

/// The error statuses documented on every operation, with their meaning.
const DOCUMENTED_ERRORS: &[(u16, &str)] = &[
    (400, "Malformed request: unreadable body or parameter"),
    (401, "Missing, invalid or expired credentials"),
    (403, "The caller's role may not do this"),
    (404, "No such resource for this caller"),
    (409, "Conflict with the stored state"),
    (413, "Request body larger than the limit"),
    (415, "Unsupported Content-Type"),
    (
        428,
        "The write must name the version it replaces (`If-Match` or `version`)",
    ),
    (
        422,
        "Well-formed but invalid; every problem is listed in `details`",
    ),
    (429, "Rate limited; see the Retry-After header"),
    (500, "Internal error (details are logged, not returned)"),
    (503, "The database is unavailable; retry shortly"),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        use poem_openapi::types::Type as _;
        MetaResponses {
            responses: DOCUMENTED_ERRORS
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: ErrorBody::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        use poem_openapi::types::Type as _;
        ErrorBody::register(registry);
    }
}

pub fn json_error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    details: Option<Value>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.into(),
            details,
        },
    };
    // Serialising a struct of strings and a `Value` cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

/// Turns any error that reached the top of the endpoint tree into the JSON error body.
/// poem and poem-openapi produce their own errors (unknown route, wrong method, bad
/// payload, wrong content type...) as plain text; this is where they are caught.
pub async fn into_json_response(err: poem::Error) -> Response {
    // The route template the router matched, kept for the request metrics; a path no
    // route matched (`NotFoundError`) keeps none, even inside a nested router.
    let pattern = if err.is::<NotFoundError>() {
        None
    } else {
        err.data::<PathPattern>().cloned()
    };
    let mut response = error_response(err);
    if let Some(pattern) = pattern {
        response.set_data(pattern);
    }
    response
}

fn error_response(err: poem::Error) -> Response {
    if let Some(api_error) = err.downcast_ref::<ApiError>() {
        return api_error.as_response();
    }
    let status = err.status();
    let (code, message): (&str, String) = if err.is::<NotFoundError>() {
        ("not_found", "no route matches this path".into())
    } else if err.is::<MethodNotAllowedError>() {
        (
            "method_not_allowed",
            "this path does not accept this HTTP method".into(),
        )
    } else if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        (
            "malformed_body",
            format!("the request body could not be read: {}", e.reason),
        )
    } else if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        ("unsupported_media_type", e.to_string())
    } else if let Some(e) = err.downcast_ref::<ParseParamError>() {
        ("invalid_parameter", e.to_string())
    } else if let Some(e) = err.downcast_ref::<ParsePathError>() {
        ("invalid_parameter", e.to_string())
    } else if let Some(e) = err.downcast_ref::<ParseMultipartError>() {
        ("malformed_body", e.to_string())
    } else if err.is::<AuthorizationError>() {
        (
            "unauthorized",
            "missing or invalid credentials: send `Authorization: Bearer <token>` or `X-API-Key`"
                .into(),
        )
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ("payload_too_large", "request body is too large".into())
    } else if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        ("internal", "internal server error".into())
    } else {
        tracing::debug!(error = %err, "request rejected");
        (
            generic_code(status),
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_ascii_lowercase(),
        )
    };
    let mut response = json_error(status, code, message, None);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert("www-authenticate", "Bearer".parse().expect("static"));
    }
    response
}

fn generic_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// A panic inside a handler: logged, answered as a JSON 500.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
        None,
    )
    .into_response()
}
