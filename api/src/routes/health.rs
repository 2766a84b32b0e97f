//! `/health` (liveness) and `/ready` (readiness).

use crewgraph_core::db::DbFailure;
use std::time::Duration;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::error::ErrorBody;
use crate::startup::AppState;

pub struct HealthApi;

#[derive(Debug, Object)]
#[oai(example)]
pub struct HealthStatus {
    /// Always `ok` when the process answers.
    pub status: String,
    /// The version of the running build.
    pub version: String,
}

#[derive(Debug, Object)]
#[oai(example)]
pub struct ReadyStatus {
    /// `ready`.
    pub status: String,
    /// `ok` when the database answered.
    pub database: String,
    /// How many migrations this build knows (all of them applied).
    pub migrations_applied: u32,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers and every migration is applied.
    #[oai(status = 200)]
    Ready(Json<ReadyStatus>),
    /// The database is unreachable or migrations are pending; `details` says which.
    #[oai(status = 503)]
    NotReady(Json<ErrorBody>),
}

/// How long readiness waits for the database before calling it unreachable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness: the process is up. Never touches the database.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<HealthStatus> {
        Json(HealthStatus {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    /// Readiness: the database answers and every migration is applied.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&AppState>) -> ReadyResponse {
        let check = tokio::time::timeout(
            READINESS_TIMEOUT,
            crewgraph_migrations::pending_migrations(&state.db),
        )
        .await;
        let (code, message, details) = match check {
            Ok(Ok(pending)) if pending.is_empty() => {
                return ReadyResponse::Ready(Json(ReadyStatus {
                    status: "ready".into(),
                    database: "ok".into(),
                    migrations_applied: crewgraph_migrations::migration_names().len() as u32,
                }));
            }
            Ok(Ok(pending)) => (
                "migrations_pending",
                format!(
                    "{} migration(s) are not applied: run `crewgraph-api migrate`",
                    pending.len()
                ),
                serde_json::json!({ "pending": pending }),
            ),
            Ok(Err(e)) if crewgraph_core::db::classify(&e) == DbFailure::OutOfFileDescriptors => {
                tracing::error!(error = %e, "readiness: out of file descriptors");
                (
                    "server_overloaded",
                    "this process has run out of file descriptors".into(),
                    serde_json::json!({ "cause": "out_of_file_descriptors" }),
                )
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: database error");
                (
                    "database_unavailable",
                    "the database is unreachable".into(),
                    serde_json::json!({ "cause": database_cause(&e) }),
                )
            }
            Err(_) => (
                "database_unavailable",
                "the database did not answer in time".into(),
                serde_json::json!({ "timeout_ms": READINESS_TIMEOUT.as_millis() as u64 }),
            ),
        };
        ReadyResponse::NotReady(Json(ErrorBody {
            error: crate::error::ErrorDetail {
                code: code.into(),
                message,
                details: Some(details),
            },
        }))
    }
}

/// A category only: the full error (which can name the database user, database or host)
/// goes to the log, not to unauthenticated callers.
fn database_cause(err: &sea_orm::DbErr) -> &'static str {
    match crewgraph_core::db::classify(err) {
        DbFailure::Unavailable(cause) => cause.as_str(),
        DbFailure::OutOfFileDescriptors | DbFailure::UnstorableText | DbFailure::Other => {
            "database_error"
        }
    }
}

impl Example for HealthStatus {
    fn example() -> Self {
        HealthStatus {
            status: "ok".into(),
            version: "0.1.0".into(),
        }
    }
}

impl Example for ReadyStatus {
    fn example() -> Self {
        ReadyStatus {
            status: "ready".into(),
            database: "ok".into(),
            migrations_applied: 3,
        }
    }
}
