//! The fang task of an execution: a row of fang's `fang_tasks`, the queue the API writes
//! to. This module owns that row's whole life beside the execution's:
//!
//! - [`enqueue`] writes it in the kickoff transaction (metadata exactly as fang serialises
//!   a task; fang's own `insert_task` uses its own pool and could not join the
//!   transaction) and notifies [`QUEUE_CHANNEL`], so idle workers wake at once;
//! - the worker's claim (`lifecycle::claim`, the one statement that must change task and
//!   execution together) marks it `in_progress` — with the worker's own atomic, batched
//!   statement, not fang's `fetch_and_touch_task`, which selects and marks in two
//!   statements (two workers can fetch one task) and claims one task per round trip;
//! - [`requeue`] puts it back (hand-back, lost worker), [`remove`] deletes it with the
//!   execution's end, [`tidy`] repairs what a crash left behind.
//!
//! fang's worker pool never runs these tasks (it runs the follow-up jobs of `crate::jobs`,
//! whose task types differ); [`RunExecution::run`] says so if it ever tried.

use std::time::Duration;

use async_trait::async_trait;
use fang::typetag;
use fang::{AsyncQueueable, AsyncRunnable, FangError};
use sea_orm::{ConnectionTrait, Statement};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{CoreError, CoreResult};

/// Wake-ups for workers: payload is an execution id (informational).
pub const QUEUE_CHANNEL: &str = "crewgraph_queue";
/// Cancel requests for running executions: payload is the execution id.
pub const CANCEL_CHANNEL: &str = "crewgraph_cancel";
/// fang's `task_type` of crew executions.
pub const TASK_TYPE: &str = "crew_execution";

/// The fang task of an execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunExecution {
    pub execution_id: Uuid,
}

#[typetag::serde]
#[async_trait]
impl AsyncRunnable for RunExecution {
    /// Executions are claimed and run by `crewgraph-worker`'s claim loop (woken by
    /// NOTIFY); no fang pool is started for this task type.
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        Err(FangError {
            description: "crew executions are run by crewgraph-worker's claim loop".into(),
        })
    }

    fn task_type(&self) -> String {
        TASK_TYPE.into()
    }

    fn max_retries(&self) -> i32 {
        0
    }
}

/// fang's metadata for a task: what `insert_task` would store.
pub fn task_metadata(execution_id: Uuid) -> CoreResult<serde_json::Value> {
    let task: &dyn AsyncRunnable = &RunExecution { execution_id };
    serde_json::to_value(task).map_err(|e| CoreError::Internal(e.into()))
}

/// Inserts the execution's fang task (id `task_id`) in the caller's transaction and wakes
/// workers (the notification is delivered on commit), in one statement.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    task_id: Uuid,
    execution_id: Uuid,
) -> CoreResult<()> {
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        // fang compares `scheduled_at` with the worker's clock: a minute back, so a worker
        // whose clock lags the database's still sees the task as due at once.
        "WITH task AS ( \
           INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
           VALUES ($1, $2, $3, now() - interval '1 minute') RETURNING id) \
         SELECT pg_notify($4, $5) FROM task",
        [
            task_id.into(),
            task_metadata(execution_id)?.into(),
            TASK_TYPE.into(),
            QUEUE_CHANNEL.into(),
            execution_id.to_string().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Puts a task back in the queue (after a lost worker or a shutdown hand-back).
pub async fn requeue<C: ConnectionTrait>(
    db: &C,
    task_id: Uuid,
    execution_id: Uuid,
) -> CoreResult<()> {
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE fang_tasks SET state = 'new', updated_at = now() WHERE id = $1",
        [task_id.into()],
    ))
    .await?;
    notify(db, QUEUE_CHANNEL, &execution_id.to_string()).await
}

/// The part of the finish statement (`lifecycle::finish_many`) that deletes the tasks of
/// the executions it ended (`done`, with their `task_id`): written here, run there, so an
/// end costs one round trip.
pub(crate) const REMOVE_ENDED_TASKS: &str =
    "removed AS (DELETE FROM fang_tasks f USING done WHERE f.id = done.task_id)";

/// Removes finished executions' tasks.
pub async fn remove<C: ConnectionTrait>(db: &C, task_ids: &[Uuid]) -> CoreResult<()> {
    if task_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = task_ids.iter().map(Uuid::to_string).collect();
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "DELETE FROM fang_tasks WHERE id = ANY(string_to_array($1, ',')::uuid[])",
        [ids.join(",").into()],
    ))
    .await?;
    Ok(())
}

/// Repairs what crashes leave behind, returning how many tasks it touched: tasks left
/// `in_progress` by a worker that died between the claim and the start go back to `new`;
/// tasks whose execution is finished or gone (normally removed with it) are deleted.
pub async fn tidy<C: ConnectionTrait>(db: &C, older_than: Duration) -> CoreResult<u64> {
    let secs = older_than.as_secs_f64();
    let released = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE fang_tasks f SET state = 'new', updated_at = now() FROM executions e \
             WHERE e.queue_task_id = f.id AND e.status = 'queued' AND f.state = 'in_progress' \
               AND f.updated_at < now() - make_interval(secs => $1)",
            [secs.into()],
        ))
        .await?
        .rows_affected();
    let orphaned = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM fang_tasks f WHERE f.task_type = $1 \
               AND f.updated_at < now() - make_interval(secs => $2) \
               AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.queue_task_id = f.id \
                               AND e.status IN ('queued', 'running'))",
            [TASK_TYPE.into(), secs.into()],
        ))
        .await?
        .rows_affected();
    if released > 0 {
        notify(db, QUEUE_CHANNEL, "released").await?;
    }
    Ok(released + orphaned)
}

pub async fn notify<C: ConnectionTrait>(db: &C, channel: &str, payload: &str) -> CoreResult<()> {
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_fangs_typetag_form() {
        let id = Uuid::now_v7();
        let metadata = task_metadata(id).expect("metadata");
        assert_eq!(metadata["type"], "RunExecution");
        assert_eq!(metadata["execution_id"], id.to_string());
        let task: Box<dyn AsyncRunnable> = serde_json::from_value(metadata).expect("fang reads it");
        assert_eq!(task.task_type(), TASK_TYPE);
    }
}
