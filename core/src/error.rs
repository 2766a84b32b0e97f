//! The domain's one error type. The API maps it to HTTP in one place
//! (`crewgraph_api::error`); the worker logs it.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The input breaks a rule; `field` names the offending input when there is one.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    /// The input breaks several rules at once; `details` lists them (e.g. graph problems).
    #[error("{message}")]
    Problems {
        code: &'static str,
        message: String,
        details: Value,
    },
    /// The input is larger than a limit.
    #[error("{message}")]
    TooLarge {
        code: &'static str,
        message: String,
        limit: usize,
    },
    /// A write that must name the version it replaces did not (optimistic concurrency).
    #[error("{0}")]
    PreconditionRequired(&'static str),
    /// Credentials are missing, wrong, expired or revoked. Deliberately vague.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not found *for this caller*.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Conflicts with stored state.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// A quota (e.g. active executions per user) is used up; not a matter of waiting a
    /// fixed time.
    #[error("{message}")]
    Quota { code: &'static str, message: String },
    /// A rate limit was hit; retry after this many seconds.
    #[error("too many attempts, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The feature is switched off by configuration.
    #[error("{0}")]
    Disabled(&'static str),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl CoreError {
    pub fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        CoreError::Invalid {
            code,
            message: message.into(),
            field: Some(field),
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
