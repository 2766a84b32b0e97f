//! The job queue: fang's `fang_tasks` table, one task per execution.
//!
//! - Enqueue writes fang's row (metadata exactly as fang serialises a task) inside the
//!   kickoff transaction — fang's own `insert_task` uses its own pool and could not join it
//!   — and notifies [`QUEUE_CHANNEL`] so idle workers wake at once.
//! - Workers claim through fang's `fetch_and_touch_task` (`FOR UPDATE SKIP LOCKED`). fang
//!   runs its SELECT and its UPDATE as two statements, so two workers can both fetch one
//!   task; the execution row decides: only one `queued → running` transition succeeds.
//! - Finished executions remove their task; the reaper hands stuck ones back.

use async_trait::async_trait;
use fang::typetag;
use fang::{AsyncQueue, AsyncQueueable, AsyncRunnable, FangError};
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
    /// Executions are run by `crewgraph-worker`'s claim loop (which waits on NOTIFY),
    /// not by fang's polling worker pool.
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        Err(FangError {
            description: "crew executions are run by crewgraph-worker".into(),
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

/// Reads an execution id back from fang's metadata, as fang's worker would.
pub fn execution_of(metadata: &serde_json::Value) -> Option<Uuid> {
    let task: Box<dyn AsyncRunnable> = serde_json::from_value(metadata.clone()).ok()?;
    if task.task_type() != TASK_TYPE {
        return None;
    }
    // The trait object hides the fields; the metadata holds them.
    metadata
        .get("execution_id")
        .and_then(|v| v.as_str())
        .and_then(|id| Uuid::parse_str(id).ok())
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

pub async fn notify<C: ConnectionTrait>(db: &C, channel: &str, payload: &str) -> CoreResult<()> {
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// A claimed fang task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedTask {
    pub task_id: Uuid,
    pub execution_id: Uuid,
}

/// fang's async queue (its own small pool), used to claim tasks.
pub struct Queue {
    fang: AsyncQueue,
}

impl Queue {
    pub async fn connect(database_url: &str, pool_size: u32) -> CoreResult<Queue> {
        let mut fang = AsyncQueue::builder()
            .uri(database_url)
            .max_pool_size(pool_size)
            .build();
        fang.connect()
            .await
            .map_err(|e| CoreError::Internal(anyhow::anyhow!("job queue connection: {e:?}")))?;
        Ok(Queue { fang })
    }

    /// Claims the oldest runnable execution task, if any (fang marks it `in_progress`).
    /// A task whose metadata is not ours is failed in fang so it stops coming back.
    pub async fn claim_next(&self) -> CoreResult<Option<ClaimedTask>> {
        loop {
            let task = self
                .fang
                .fetch_and_touch_task(Some(TASK_TYPE.to_string()))
                .await
                .map_err(|e| CoreError::Internal(anyhow::anyhow!("claiming a task: {e:?}")))?;
            let Some(task) = task else {
                return Ok(None);
            };
            match execution_of(&task.metadata) {
                Some(execution_id) => {
                    return Ok(Some(ClaimedTask {
                        task_id: task.id,
                        execution_id,
                    }));
                }
                None => {
                    tracing::warn!(task_id = %task.id, "unreadable job queue task; marking it failed");
                    self.fang
                        .fail_task(&task, "not a crewgraph execution task")
                        .await
                        .map_err(|e| CoreError::Internal(anyhow::anyhow!("{e:?}")))?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_fangs_typetag_form_and_reads_back() {
        let id = Uuid::now_v7();
        let metadata = task_metadata(id).expect("metadata");
        assert_eq!(metadata["type"], "RunExecution");
        assert_eq!(metadata["execution_id"], id.to_string());
        assert_eq!(execution_of(&metadata), Some(id));
        assert_eq!(execution_of(&serde_json::json!({"type": "Other"})), None);
    }
}
