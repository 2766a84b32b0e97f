//! The export job: one ended execution's MLflow run and trace. fang's pool runs it and
//! retries it with backoff while a destination fails; each attempt is counted in its
//! `mlflow_exports` row, which says `failed` (with the last error) once
//! `CREWGRAPH_MLFLOW_MAX_ATTEMPTS` attempts failed.
//!
//! Idempotent, step by step: the experiment and run ids are stored as soon as they are
//! known; a run is looked up by its execution-id tag before one is made (so an answer lost
//! after `runs/create` makes no second run); metric points carry fixed timestamps (MLflow
//! keeps one of identical points); spans have fixed ids. A lease keeps two workers handed
//! the same job (fang's fetch can do that) from exporting one execution at once.

use async_trait::async_trait;
use fang::typetag;
use fang::{AsyncQueueable, AsyncRunnable, FangError};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::client::{ExportError, MlflowClient, auth_headers, batches};
use super::otlp::{self, Destination};
use super::run_data::{self, RunData};
use super::traces::{TraceRoot, build_spans};
use super::{Exporter, installed};
use crate::events::StoredEvent;
use crate::jobs::{self, TASK_TYPE};

/// How long one attempt may hold an export (far more than its requests' timeouts).
const LEASE_SECS: i64 = 600;
/// fang's own retry limit when the settings are unknown (they are read per process).
const FALLBACK_MAX_ATTEMPTS: u32 = 30;

/// Exports one ended execution to MLflow (and the OTLP endpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MlflowExport {
    pub execution_id: Uuid,
}

#[typetag::serde]
#[async_trait]
impl AsyncRunnable for MlflowExport {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let (context, _guard) = jobs::enter()?;
        let db = &context.db;
        let progress = match claim(db, self.execution_id).await.map_err(database)? {
            Claim::Done => return Ok(()),
            Claim::Busy => {
                return Err(FangError {
                    description: "another worker is exporting this execution".into(),
                });
            }
            Claim::Claimed(progress) => progress,
        };
        let result = match installed() {
            Some(exporter) => export(db, &exporter, self.execution_id, progress.clone()).await,
            None => Err(ExportError::new(
                "MLflow export is not configured in this worker: give it the API's MLFLOW_* and OTEL_* variables",
            )),
        };
        match result {
            Ok(()) => {
                record_success(db, self.execution_id)
                    .await
                    .map_err(database)?;
                Ok(())
            }
            Err(error) => {
                let given_up = record_failure(db, self.execution_id, &error.0, max_attempts())
                    .await
                    .map_err(database)?;
                if given_up {
                    tracing::warn!(
                        execution_id = %self.execution_id,
                        attempts = progress.attempts,
                        error = %error,
                        "MLflow export given up"
                    );
                    // The state says so; fang has nothing left to retry.
                    return Ok(());
                }
                Err(FangError {
                    description: error.0,
                })
            }
        }
    }

    fn task_type(&self) -> String {
        TASK_TYPE.into()
    }

    /// Our own count (in `mlflow_exports`) decides when to give up; fang's is a backstop
    /// with room for attempts that found the export leased by another worker.
    fn max_retries(&self) -> i32 {
        i32::try_from(max_attempts().saturating_mul(2)).unwrap_or(i32::MAX)
    }

    /// `CREWGRAPH_MLFLOW_RETRY_BASE_SECS`, doubling per retry up to `..._RETRY_MAX_SECS`.
    fn backoff(&self, attempt: u32) -> u32 {
        let (base, max) = installed().map_or((5, 900), |e| {
            (e.config.retry_base_secs, e.config.retry_max_secs)
        });
        base.saturating_mul(2u32.saturating_pow(attempt)).min(max)
    }
}

fn max_attempts() -> u32 {
    installed().map_or(FALLBACK_MAX_ATTEMPTS, |e| e.config.max_attempts)
}

fn database(e: crate::error::CoreError) -> FangError {
    FangError {
        description: format!("MLflow export: database: {e}"),
    }
}

/// What earlier attempts achieved.
#[derive(Debug, Clone, FromQueryResult)]
struct Progress {
    attempts: i32,
    experiment_id: Option<String>,
    run_id: Option<String>,
    traces_sent: bool,
}

enum Claim {
    /// Exported, given up, or the execution is gone: nothing to do.
    Done,
    /// Another attempt holds the lease.
    Busy,
    Claimed(Progress),
}

/// Takes the lease of a pending export and counts the attempt.
async fn claim<C: ConnectionTrait>(db: &C, execution_id: Uuid) -> crate::error::CoreResult<Claim> {
    let backend = db.get_database_backend();
    let claimed = Progress::find_by_statement(Statement::from_sql_and_values(
        backend,
        "UPDATE mlflow_exports SET attempts = attempts + 1, updated_at = now(), \
           leased_until = now() + make_interval(secs => $2) \
         WHERE execution_id = $1 AND state = 'pending' \
           AND (leased_until IS NULL OR leased_until < now()) \
         RETURNING attempts, experiment_id, run_id, traces_sent_at IS NOT NULL AS traces_sent",
        [execution_id.into(), (LEASE_SECS as f64).into()],
    ))
    .one(db)
    .await?;
    if let Some(progress) = claimed {
        return Ok(Claim::Claimed(progress));
    }
    let pending = db
        .query_one(Statement::from_sql_and_values(
            backend,
            "SELECT 1 AS one FROM mlflow_exports WHERE execution_id = $1 AND state = 'pending'",
            [execution_id.into()],
        ))
        .await?;
    Ok(if pending.is_some() {
        Claim::Busy
    } else {
        Claim::Done
    })
}

async fn export<C: ConnectionTrait>(
    db: &C,
    exporter: &Exporter,
    execution_id: Uuid,
    mut progress: Progress,
) -> Result<(), ExportError> {
    let stored = |e: crate::error::CoreError| ExportError::new(format!("database: {e}"));
    let Some(data) = run_data::load(db, execution_id).await.map_err(stored)? else {
        return Ok(()); // deleted meanwhile (its export row went with it)
    };
    let mut mlflow_trace = None;
    if let Some(tracking) = &exporter.config.tracking {
        let (experiment_id, run_id) =
            export_run(db, exporter, tracking, &data, &mut progress).await?;
        mlflow_trace = Some(Destination::mlflow(
            &tracking.uri,
            auth_headers(&tracking.auth),
            &experiment_id,
            &run_id,
        ));
    }
    if progress.traces_sent {
        return Ok(());
    }
    let events = trace_events(db, execution_id).await.map_err(stored)?;
    let execution = &data.execution;
    let crew_name = execution
        .spec()
        .and_then(|s| s.name)
        .or_else(|| execution.graph_name.clone())
        .unwrap_or_else(|| "crew".into());
    let root = TraceRoot {
        execution_id,
        crew_name: &crew_name,
        status: &execution.status,
        end_code: execution.end_code.as_deref(),
        start: execution.start(),
        end: execution.end(),
    };
    let spans = build_spans(&root, &events, exporter.config.capture_content);
    let other = exporter.config.otlp.as_ref().map(Destination::otlp);
    for destination in mlflow_trace.iter().chain(other.iter()) {
        otlp::send(&exporter.http, destination, execution_id, &spans).await?;
    }
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE mlflow_exports SET traces_sent_at = now() WHERE execution_id = $1",
        [execution_id.into()],
    ))
    .await
    .map_err(|e| stored(e.into()))?;
    Ok(())
}

/// The run, made or found, with its data logged and its end recorded; returns its
/// experiment and run ids.
async fn export_run<C: ConnectionTrait>(
    db: &C,
    exporter: &Exporter,
    tracking: &crate::config::MlflowTracking,
    data: &RunData,
    progress: &mut Progress,
) -> Result<(String, String), ExportError> {
    let client = MlflowClient::new(&exporter.http, tracking);
    let execution = &data.execution;
    let experiment_id = match progress.experiment_id.clone() {
        Some(id) => id,
        None => {
            let name = run_data::experiment_name(&tracking.experiment_name, execution);
            client.experiment_id(&name).await?
        }
    };
    let run_id = match progress.run_id.clone() {
        Some(id) => id,
        None => match client.find_run(&experiment_id, execution.id).await? {
            Some(id) => id,
            None => {
                let name = run_data::run_name(execution);
                let start = execution.start().timestamp_millis();
                client
                    .create_run(&experiment_id, &name, start, execution.id)
                    .await?
            }
        },
    };
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE mlflow_exports SET experiment_id = $2, run_id = $3, updated_at = now() \
         WHERE execution_id = $1",
        [
            execution.id.into(),
            experiment_id.clone().into(),
            run_id.clone().into(),
        ],
    ))
    .await
    .map_err(|e| ExportError::new(format!("database: {e}")))?;
    progress.experiment_id = Some(experiment_id.clone());
    progress.run_id = Some(run_id.clone());
    let all = batches(
        run_data::metric_points(data),
        run_data::run_params(data),
        run_data::run_tags(execution),
    );
    for batch in &all {
        client.log_batch(&run_id, batch).await?;
    }
    client
        .end_run(
            &run_id,
            execution.run_status(),
            execution.end().timestamp_millis(),
        )
        .await?;
    Ok((experiment_id, run_id))
}

/// The events spans are made of (not the streamed LLM text chunks).
async fn trace_events<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
) -> crate::error::CoreResult<Vec<StoredEvent>> {
    Ok(
        StoredEvent::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT execution_id, seq, type AS event_type, data, created_at FROM execution_events \
         WHERE execution_id = $1 AND type <> 'llm.delta' ORDER BY seq",
            [execution_id.into()],
        ))
        .all(db)
        .await?,
    )
}

async fn record_success<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
) -> crate::error::CoreResult<()> {
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE mlflow_exports SET state = 'exported', last_error = NULL, leased_until = NULL, \
           exported_at = now(), updated_at = now() \
         WHERE execution_id = $1",
        [execution_id.into()],
    ))
    .await?;
    Ok(())
}

/// Records a failed attempt; `true` when it was the last one allowed.
async fn record_failure<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
    error: &str,
    max_attempts: u32,
) -> crate::error::CoreResult<bool> {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE mlflow_exports SET last_error = $2, leased_until = NULL, updated_at = now(), \
               state = CASE WHEN attempts >= $3 THEN 'failed' ELSE state END \
             WHERE execution_id = $1 RETURNING state",
            [
                execution_id.into(),
                error.into(),
                i64::from(max_attempts).into(),
            ],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<String>("", "state")? == "failed",
        None => true,
    })
}
