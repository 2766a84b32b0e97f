//! The reaper: recovers executions whose worker stopped heartbeating.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use uuid::Uuid;

use super::finish::cancel_instead;
use super::{Finish, Outcome, Status, end_code, finish};
use crate::error::CoreResult;
use crate::executions::queue_task;

/// What one reaper pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub stuck_tasks_released: u64,
}

#[derive(FromQueryResult)]
struct StaleRow {
    id: Uuid,
    attempt: i32,
    lost_count: i32,
    queue_task_id: Option<Uuid>,
    cancel_requested: bool,
}

/// Recovers executions whose worker stopped heartbeating: re-queued until a run has been
/// lost `max_attempts` times, then failed with `worker_lost`; cancelled instead when a
/// cancel was requested. Safe to run from every worker at once (rows are taken with SKIP
/// LOCKED). Also tidies the queue's tasks (see [`queue_task::tidy`]).
pub async fn reap(
    db: &DatabaseConnection,
    lost_after: Duration,
    max_attempts: i32,
) -> CoreResult<Reaped> {
    let txn = db.begin().await?;
    let stale = StaleRow::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT id, attempt, lost_count, queue_task_id, cancel_requested_at IS NOT NULL AS cancel_requested \
         FROM executions \
         WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1) \
         ORDER BY heartbeat_at LIMIT 100 FOR UPDATE SKIP LOCKED",
        [lost_after.as_secs_f64().into()],
    ))
    .all(&txn)
    .await?;
    let mut reaped = Reaped::default();
    for row in stale {
        if row.cancel_requested {
            cancel_instead(&txn, row.id, row.attempt, row.queue_task_id).await?;
            tracing::warn!(execution_id = %row.id, "worker lost: execution cancelled as requested");
            reaped.cancelled += 1;
        } else if row.lost_count + 1 < max_attempts.max(1) {
            debug_assert!(Status::Running.can_become(Status::Queued));
            txn.execute(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "UPDATE executions SET status = 'queued', worker_id = NULL, heartbeat_at = NULL, \
                   lost_count = lost_count + 1 WHERE id = $1",
                [row.id.into()],
            ))
            .await?;
            if let Some(task_id) = row.queue_task_id {
                queue_task::requeue(&txn, task_id, row.id).await?;
            }
            tracing::warn!(execution_id = %row.id, attempt = row.attempt, "worker lost: execution re-queued");
            reaped.requeued += 1;
        } else {
            let message = format!(
                "the worker running this execution was lost {} time(s); giving up",
                row.lost_count + 1
            );
            finish(
                &txn,
                &Finish {
                    execution_id: row.id,
                    attempt: row.attempt,
                    task_id: row.queue_task_id,
                    from: Status::Running,
                    outcome: Outcome::failed(end_code::WORKER_LOST, message),
                },
            )
            .await?;
            tracing::warn!(execution_id = %row.id, "worker lost too often: execution failed");
            reaped.failed += 1;
        }
    }
    reaped.stuck_tasks_released = queue_task::tidy(&txn, lost_after).await?;
    txn.commit().await?;
    Ok(reaped)
}
