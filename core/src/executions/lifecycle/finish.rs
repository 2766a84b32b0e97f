//! The ends of a run (`running → succeeded | failed | cancelled`, `queued → cancelled`)
//! and the hand-back (`running → queued`). One path records every end.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use uuid::Uuid;

use super::{Outcome, Status, cancel_reason};
use crate::error::{CoreError, CoreResult};
use crate::events::{self, EventBatch};
use crate::executions::queue_task::{self, REMOVE_ENDED_TASKS};
use crate::metrics;
use crate::threads;

/// An end to record: the execution, the attempt that holds it and the status it is
/// expected in (a worker's end is fenced by both), and how it ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub execution_id: Uuid,
    pub attempt: i32,
    /// The execution's fang task (removed with the end).
    pub task_id: Option<Uuid>,
    pub from: Status,
    pub outcome: Outcome,
}

impl Finish {
    /// The end of a run a worker holds.
    pub fn of_running(execution_id: Uuid, attempt: i32, task_id: Uuid, outcome: Outcome) -> Self {
        Finish {
            execution_id,
            attempt,
            task_id: Some(task_id),
            from: Status::Running,
            outcome,
        }
    }
}

/// Locks these executions' rows in id order. Every transaction that changes several
/// executions takes their locks in this one order first (the heartbeat and the event
/// append order theirs the same way), so none can deadlock with another.
pub async fn lock_in_id_order<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> CoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT id FROM executions WHERE id = ANY(string_to_array($1, ',')::uuid[]) \
         ORDER BY id FOR UPDATE",
        [ids.join(",").into()],
    ))
    .await?;
    Ok(())
}

/// Records one end; `false` (and nothing written) if the execution was no longer in the
/// expected status at that attempt.
pub async fn finish<C: ConnectionTrait>(db: &C, finish: &Finish) -> CoreResult<bool> {
    Ok(finish_many(db, std::slice::from_ref(finish))
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}

#[derive(serde::Serialize)]
struct FinishRow {
    id: Uuid,
    attempt: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<Uuid>,
    from: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    /// The chat message a run leaves in its thread (used when it has one).
    message_id: Uuid,
    message_role: &'static str,
    message: String,
}

/// Records many ends at once, whatever their number, in a few statements: the status
/// with its result or error, the fang tasks removed and, for chat runs, the thread's
/// message; then the runs' figures (`metrics::record_ends`) and the terminal events — all
/// in the caller's transaction, so a client that sees the terminal event finds the
/// execution finished and its figures recorded. Returns, per end, whether it was recorded.
pub async fn finish_many<C: ConnectionTrait>(db: &C, finishes: &[Finish]) -> CoreResult<Vec<bool>> {
    if finishes.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(finishes.len());
    for finish in finishes {
        let to = finish.outcome.status();
        if !finish.from.can_become(to) {
            return Err(CoreError::Internal(anyhow::anyhow!(
                "no transition {} → {}",
                finish.from.as_str(),
                to.as_str()
            )));
        }
        let (role, message) = finish.outcome.thread_message();
        rows.push(FinishRow {
            id: finish.execution_id,
            attempt: finish.attempt,
            task_id: finish.task_id,
            from: finish.from.as_str(),
            status: to.as_str(),
            result: finish.outcome.result_json()?,
            error: finish.outcome.error_json(),
            message_id: Uuid::now_v7(),
            message_role: role.as_str(),
            message: threads::run_message_content(&message),
        });
    }
    let input = serde_json::to_value(&rows).map_err(anyhow::Error::from)?;
    let done: Vec<(Uuid, i32)> = db
        .query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                r#"
WITH input AS (
    SELECT (x->>'id')::uuid AS id, (x->>'attempt')::integer AS attempt,
           (x->>'task_id')::uuid AS task_id, x->>'from' AS from_status, x->>'status' AS status,
           x->'result' AS result, x->'error' AS error, (x->>'message_id')::uuid AS message_id,
           x->>'message_role' AS message_role, x->>'message' AS message
    FROM jsonb_array_elements($1::jsonb) AS x
), done AS (
    UPDATE executions e SET status = i.status, result = i.result, error = i.error,
           finished_at = now(), heartbeat_at = NULL,
           -- A cancelled execution always says when it was asked to stop.
           cancel_requested_at = CASE WHEN i.status = 'cancelled'
                                      THEN COALESCE(e.cancel_requested_at, now())
                                      ELSE e.cancel_requested_at END
    FROM input i WHERE e.id = i.id AND e.attempt = i.attempt AND e.status = i.from_status
    RETURNING e.id, e.attempt, e.thread_id, i.task_id, i.message_id, i.message_role, i.message
), {REMOVE_ENDED_TASKS}, touched AS (
    UPDATE threads t SET updated_at = now() FROM done WHERE t.id = done.thread_id
), answered AS (
    INSERT INTO messages (id, thread_id, role, content, execution_id)
    SELECT d.message_id, d.thread_id, d.message_role, d.message, d.id
    FROM done d JOIN threads t ON t.id = d.thread_id
)
SELECT id, attempt FROM done
"#
            ),
            [input.into()],
        ))
        .await?
        .into_iter()
        .map(|row| {
            Ok((
                row.try_get::<Uuid>("", "id")?,
                row.try_get::<i32>("", "attempt")?,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let recorded: Vec<bool> = finishes
        .iter()
        .map(|f| done.contains(&(f.execution_id, f.attempt)))
        .collect();
    let ended: Vec<Uuid> = done.iter().map(|(id, _)| *id).collect();
    metrics::record_ends(db, &ended, metrics::prices::installed()).await?;
    crate::mlflow::queue_exports(db, &ended).await?;
    let terminal: Vec<EventBatch> = finishes
        .iter()
        .zip(&recorded)
        .filter(|(_, r)| **r)
        .map(|(f, _)| EventBatch {
            execution_id: f.execution_id,
            attempt: None,
            events: vec![f.outcome.terminal_event()],
        })
        .collect();
    events::append(db, &terminal).await?;
    Ok(recorded)
}

/// Ends a run that was asked to stop but whose worker can no longer do it (lost, or
/// handing back): cancelled, with its event. A cancel request must never become a re-run.
pub(super) async fn cancel_instead<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
    attempt: i32,
    task_id: Option<Uuid>,
) -> CoreResult<bool> {
    finish(
        db,
        &Finish {
            execution_id,
            attempt,
            task_id,
            from: Status::Running,
            outcome: Outcome::cancelled(cancel_reason::ON_REQUEST),
        },
    )
    .await
}

/// Gives a running execution back to the queue (a stopping worker's unfinished run). It
/// does not count as lost; the next claim is a new attempt. A run with a pending cancel
/// request is cancelled instead. `false` if the claim was lost meanwhile.
pub async fn hand_back<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
    attempt: i32,
    task_id: Uuid,
) -> CoreResult<bool> {
    debug_assert!(Status::Running.can_become(Status::Queued));
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE executions SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE status END, \
               worker_id = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE worker_id END, \
               heartbeat_at = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE heartbeat_at END \
             WHERE id = $1 AND attempt = $2 AND status = 'running' \
             RETURNING cancel_requested_at IS NOT NULL AS cancel",
            [execution_id.into(), attempt.into()],
        ))
        .await?;
    match row.map(|r| r.try_get::<bool>("", "cancel")).transpose()? {
        None => Ok(false),
        Some(true) => cancel_instead(db, execution_id, attempt, Some(task_id)).await,
        Some(false) => {
            queue_task::requeue(db, task_id, execution_id).await?;
            Ok(true)
        }
    }
}
