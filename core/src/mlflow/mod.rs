//! MLflow export: every ended execution becomes an MLflow run (experiment per graph,
//! params, metrics, tags, status) and a trace of its spans, sent over OTLP to MLflow and
//! to any other OTLP endpoint. Off unless `MLFLOW_TRACKING_URI` (or an OTLP endpoint) is
//! set; the figures stay in PostgreSQL either way.
//!
//! The export is a fang follow-up job ([`MlflowExport`]) queued in the transaction that
//! records the end ([`queue_exports`]), so it exists exactly when the end does; fang's pool
//! runs it with retries and backoff while MLflow is down. It is idempotent: a retried
//! export finds its run by the `crewgraph.execution_id` tag, metrics are logged with the
//! same timestamps and steps (MLflow keeps one of identical points) and spans with the
//! same ids. The state of each export is a row of `mlflow_exports`.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use uuid::Uuid;

use crate::auth::Principal;
use crate::config::MlflowConfig;
use crate::error::{CoreError, CoreResult};
use crate::jobs::TASK_TYPE;

mod client;
mod job;
mod otlp;
mod run_data;
mod traces;

pub use client::EXECUTION_ID_TAG;
pub use job::MlflowExport;

/// What this process exports with, installed once at start-up by both binaries.
pub struct Exporter {
    pub config: MlflowConfig,
    http: reqwest::Client,
}

static EXPORTER: OnceLock<Option<Arc<Exporter>>> = OnceLock::new();

/// Installs this process's export settings (the first call wins). Both binaries call it:
/// either can end an execution, and the worker runs the export jobs.
pub fn install(config: &MlflowConfig) -> CoreResult<()> {
    let exporter = if config.enabled() {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CoreError::Internal(anyhow::anyhow!("MLflow http client: {e}")))?;
        Some(Arc::new(Exporter {
            config: config.clone(),
            http,
        }))
    } else {
        None
    };
    let _ = EXPORTER.set(exporter);
    Ok(())
}

/// The installed exporter; `None` when exports are off (or nothing was installed).
pub fn installed() -> Option<Arc<Exporter>> {
    EXPORTER.get().cloned().flatten()
}

/// Queues the export of these just-ended executions, in the caller's transaction: one
/// `mlflow_exports` row and one fang job each, in one statement however many there are.
/// Does nothing when exports are off.
pub async fn queue_exports<C: ConnectionTrait>(db: &C, execution_ids: &[Uuid]) -> CoreResult<()> {
    if execution_ids.is_empty() || installed().is_none() {
        return Ok(());
    }
    let ids: Vec<String> = execution_ids.iter().map(Uuid::to_string).collect();
    // fang's own serialisation of the job, with each execution's id put in.
    let template = serde_json::to_value(&MlflowExport {
        execution_id: Uuid::nil(),
    } as &dyn fang::AsyncRunnable)
    .map_err(|e| CoreError::Internal(e.into()))?;
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        // Due a minute back, as jobs::enqueue does: a worker whose clock lags sees it.
        "WITH queued AS ( \
           INSERT INTO mlflow_exports (execution_id) \
           SELECT unnest(string_to_array($1, ',')::uuid[]) \
           ON CONFLICT (execution_id) DO NOTHING RETURNING execution_id) \
         INSERT INTO fang_tasks (metadata, task_type, scheduled_at) \
         SELECT jsonb_set($2::jsonb, '{execution_id}', to_jsonb(execution_id::text)), $3, \
                now() - interval '1 minute' \
         FROM queued",
        [ids.join(",").into(), template.into(), TASK_TYPE.into()],
    ))
    .await?;
    Ok(())
}

/// Where an export stands (the execution resource's `mlflow`).
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct ExportState {
    /// `pending`, `exported` or `failed`.
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub experiment_id: Option<String>,
    pub run_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub exported_at: Option<DateTime<Utc>>,
}

impl ExportState {
    /// The run's page in MLflow's UI, when the run exists and this process knows MLflow.
    pub fn run_url(&self) -> Option<String> {
        let exporter = installed()?;
        let tracking = exporter.config.tracking.as_ref()?;
        Some(format!(
            "{}/#/experiments/{}/runs/{}",
            tracking.uri,
            self.experiment_id.as_deref()?,
            self.run_id.as_deref()?
        ))
    }
}

/// The export state of one of the caller's executions; `None` when it has none (exports
/// off when it ended, or still running). Another user's execution has none either.
pub async fn export_state<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    execution_id: Uuid,
) -> CoreResult<Option<ExportState>> {
    Ok(
        ExportState::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT x.state, x.attempts, x.last_error, x.experiment_id, x.run_id, x.updated_at, \
                x.exported_at \
         FROM mlflow_exports x JOIN executions e ON e.id = x.execution_id \
         WHERE x.execution_id = $1 AND e.user_id = $2",
            [execution_id.into(), principal.user_id.into()],
        ))
        .one(db)
        .await?,
    )
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::MlflowExport;

    /// queue_exports writes fang's metadata by putting the id into a template: it must be
    /// what fang's own serialisation gives, and what fang's worker reads back.
    #[test]
    fn queued_job_metadata_is_fangs_serialisation_of_the_job() {
        let id = Uuid::now_v7();
        let mut template = serde_json::to_value(&MlflowExport {
            execution_id: Uuid::nil(),
        } as &dyn fang::AsyncRunnable)
        .expect("serialise");
        template["execution_id"] = serde_json::json!(id.to_string());
        let direct =
            serde_json::to_value(&MlflowExport { execution_id: id } as &dyn fang::AsyncRunnable)
                .expect("serialise");
        assert_eq!(template, direct);
        let back: Box<dyn fang::AsyncRunnable> =
            serde_json::from_value(template).expect("fang reads it back");
        assert_eq!(back.task_type(), crate::jobs::TASK_TYPE);
    }
}
